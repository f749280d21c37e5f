"""OpenTelemetry tracing: a consumer span per message, a child span per handler attempt.

Off unless the standard ``OTEL_*`` variables ask for it, decided once at start-up: then the
worker is built exactly as without tracing (no wrapper, no per-message check). On, the worker
is given a `DeliveryTracer`: its delivery runs each message in a span, its handlers are wrapped
in `_TracedHandler`; the SDK and the OTLP/HTTP exporter come with
``pip install 'recording-consumer[otel]'``.

The trace's context comes from the message's W3C ``traceparent``/``tracestate`` headers, or a
CloudEvent's distributed-tracing extension (``ce_traceparent`` headers in binary mode, the
``traceparent`` attribute in structured mode), and goes into what the worker produces: dead
letters, ``ctx.publish`` (so the `publish` handler's output), ``dlq replay``. The ingress
starts a trace (or continues the request's ``traceparent``) with a server span per callback and
puts its context on the record it produces.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
from opentelemetry import context, propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from consumer.cloudevents import CloudEvent
from consumer.deadletters.headers import Failure
from consumer.errors import ConfigError, PermanentFailure, RetryLater
from consumer.events import RecordingEvent
from consumer.handler_api import Context, Handler, Publish, Record
from consumer.redaction import error_line
from consumer.settings.config import RetrySettings, Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from consumer.outcomes import Outcome

SCOPE = "recording-consumer"
TRACE_HEADERS = ("traceparent", "tracestate")
_CLOUDEVENT_HEADERS = {"ce_traceparent": "traceparent", "ce_tracestate": "tracestate"}
_FAILED_OUTCOMES = frozenset({"dead_lettered", "undecodable"})

_NO_PARENT = context.Context()
_tracer: Tracer | None = None
_provider: TracerProvider | None = None


def start_from_environment(environ: Mapping[str, str] = os.environ) -> bool:
    """Turn tracing on if the ``OTEL_*`` variables ask for it; whether they did.

    On when ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp``, ``console``) or an OTLP
    endpoint is set, unless ``OTEL_SDK_DISABLED=true``. Everything else (sampler, service
    name, resource, batching, headers) is the SDK's own reading of the standard variables.
    """
    exporters = _exporters_asked(environ)
    if not exporters:
        return False
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        raise ConfigError(
            "OTEL_*: tracing is configured but the OpenTelemetry SDK is not installed: "
            "pip install 'recording-consumer[otel]'",
            "OTEL_TRACES_EXPORTER",
        ) from None
    defaults = {} if "OTEL_SERVICE_NAME" in environ else {SERVICE_NAME: "recording-consumer"}
    provider = TracerProvider(resource=Resource.create(defaults), shutdown_on_exit=False)
    for name in exporters:
        exporter = _otlp_exporter(environ) if name == "otlp" else ConsoleSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    use(provider)
    atexit.register(stop)  # flush what is batched when the command ends
    return True


def use(provider: TracerProvider) -> None:
    """Trace with `provider` from now on (workers built later); tests and embedders call it."""
    global _tracer, _provider
    trace.set_tracer_provider(provider)
    _provider, _tracer = provider, provider.get_tracer(SCOPE)


def stop() -> None:
    """Flush and stop the provider; workers built later do not trace."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer = _provider = None


def tracer_for(settings: Settings) -> DeliveryTracer | None:
    """The worker's tracer while tracing is on, else None: the worker then runs untraced code."""
    return None if _tracer is None else DeliveryTracer(_tracer, settings)


def inject(headers: Sequence[tuple[str, bytes | None]]) -> list[tuple[str, bytes | None]]:
    """`headers` with the current context's (``traceparent``, ``tracestate``, ``baggage`` as
    the propagators write them) in place of theirs. A CloudEvent's ``ce_traceparent`` stays:
    it is the event's origin, not a hop's."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    if not carrier:
        return list(headers)
    kept = [(k, v) for k, v in headers if k not in TRACE_HEADERS and k not in carrier]
    return kept + [(k, v.encode()) for k, v in carrier.items()]


def replayed(headers: list[tuple[str, bytes | None]], topic: str) -> list[tuple[str, bytes | None]]:
    """The headers of a message ``dlq replay`` sends to `topic`: while tracing is on, with the
    context of a send span that is the child of the dead letter's own context."""
    if _tracer is None:
        return headers
    carrier = {k: v.decode("latin-1") for k, v in headers if k in TRACE_HEADERS and v is not None}
    attributes = {
        "messaging.system": "kafka",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": topic,
    }
    with _tracer.start_as_current_span(
        f"send {topic}",
        context=propagate.extract(carrier),
        kind=SpanKind.PRODUCER,
        attributes=attributes,
    ):
        return inject(headers)


def received(request_headers: Mapping[str, str], path: str) -> AbstractContextManager[Span] | None:
    """A server span for one callback the ingress takes, a child of the request's
    ``traceparent`` when it has one: current while the callback is stored, so what is produced
    carries its context (`context_headers`). None while tracing is off."""
    if _tracer is None:
        return None
    return _tracer.start_as_current_span(
        f"POST {path}",
        context=propagate.extract(request_headers),
        kind=SpanKind.SERVER,
        attributes={"http.request.method": "POST", "url.path": path},
    )


def context_headers() -> tuple[tuple[str, bytes], ...]:
    """The current context as Kafka headers (``traceparent``, ``tracestate``)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return tuple((k, v.encode()) for k, v in carrier.items())


class _TraceAttributes(msgspec.Struct):
    traceparent: str | None = None
    tracestate: str | None = None


_structured = msgspec.json.Decoder(_TraceAttributes).decode


class _Retry(Protocol):
    span: Any
    """The message's span between attempts: the tracer's to keep."""


class TracedMessage(Protocol):
    """What the tracer reads of a message the worker runs: a job, or an undecodable message
    (it has no `event`)."""

    @property
    def record(self) -> Record: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def retry(self) -> _Retry | None: ...


def extracted(work: TracedMessage) -> context.Context:
    """The context a message carries: W3C headers, else its CloudEvent's tracing extension."""
    carrier: dict[str, str] = {}
    for name, value in work.record.headers:
        if value is None:  # a producer's null header carries no context
            continue
        if name in TRACE_HEADERS:
            carrier[name] = value.decode("latin-1")
        elif name in _CLOUDEVENT_HEADERS:
            carrier.setdefault(_CLOUDEVENT_HEADERS[name], value.decode("latin-1"))
    envelope: CloudEvent | None = getattr(work, "envelope", None)
    if "traceparent" not in carrier and envelope is not None:
        try:
            found = _structured(work.value or b"")
        except msgspec.DecodeError:
            found = _TraceAttributes()  # binary mode: the value is the data, not the envelope
        if found.traceparent is not None:
            carrier["traceparent"] = found.traceparent
            if found.tracestate is not None:
                carrier["tracestate"] = found.tracestate
    # Nothing to extract (the common case): a root span, without the propagators' work.
    return propagate.extract(carrier) if carrier else _NO_PARENT


class DeliveryTracer:
    """A consumer span around each message, current while it runs, ended with its outcome;
    the ids on its log lines; context injected into what it produces (the worker's tracer)."""

    def __init__(self, tracer: Tracer, settings: Settings) -> None:
        self._tracer = tracer
        self._group = settings.kafka.group_id
        self._retry = settings.retry
        self._outcomes: dict[TracedMessage, Outcome] = {}
        """Outcomes `outcome()` was told during an attempt, taken when the attempt returns."""

    def handlers(self, handlers: Mapping[str, Handler]) -> Mapping[str, Handler]:
        """Each handler wrapped in a span per attempt."""
        tracer, retry = self._tracer, self._retry
        return {name: _TracedHandler(tracer, name, h, retry) for name, h in handlers.items()}

    def dead_letters(self, dead_letters: DeadLetters) -> DeadLetters:
        return _TracedDeadLetters(dead_letters)

    def publish(self, publish: Publish) -> Publish:
        return _traced(publish)

    def writer(self, write: Callable[..., Any]) -> Callable[..., Any]:
        return _with_ids(write)

    async def attempt(
        self, work: TracedMessage, run: Callable[[Any], Awaitable[float | None]]
    ) -> float | None:
        retry = work.retry
        span = retry.span if retry is not None and retry.span is not None else self._start(work)
        token = context.attach(trace.set_span_in_context(span))
        try:
            delay = await run(work)
        except BaseException:
            span.set_attribute("recording_consumer.outcome", "interrupted")
            span.end()
            raise
        finally:
            context.detach(token)
        if delay is not None and work.retry is not None:
            work.retry.span = span  # the same span goes on at the next attempt
            return delay
        outcome = self._outcomes.pop(work, None)
        if outcome is None:
            outcome = "handled" if getattr(work, "route", None) else "unrouted"
        span.set_attribute("recording_consumer.outcome", outcome)
        if outcome in _FAILED_OUTCOMES:
            span.set_status(Status(StatusCode.ERROR, outcome))
        span.end()
        return delay

    def outcome(self, outcome: Outcome, work: TracedMessage, fields: Mapping[str, Any]) -> None:
        if outcome == "retried":
            trace.get_current_span().add_event(
                "retry scheduled",
                {"handlers": list(fields["handlers"]), "delay": fields["delay"]},
            )
        else:
            self._outcomes[work] = outcome

    def _start(self, work: TracedMessage) -> Span:
        record = work.record
        span = self._tracer.start_span(
            f"process {record.topic}", context=extracted(work), kind=SpanKind.CONSUMER
        )
        if not span.is_recording():
            return span  # not sampled: its attributes would be thrown away
        attributes: dict[str, Any] = {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": record.topic,
            "messaging.destination.partition.id": str(record.partition),
            "messaging.kafka.offset": record.offset,
            "messaging.consumer.group.name": self._group,
        }
        if record.key is not None:
            attributes["messaging.kafka.message.key"] = record.key.decode("utf-8", "replace")
        event: RecordingEvent | None = getattr(work, "event", None)
        if event is not None:
            for name, value in (
                ("recording_consumer.recording_id", event.recording_id),
                ("recording_consumer.status", event.status),
                ("recording_consumer.event_type", event.event_type),
            ):
                if value is not None:
                    attributes[name] = value
        span.set_attributes(attributes)
        return span


class _TracedHandler:
    """A handler whose every attempt is a span, current while it runs."""

    def __init__(self, tracer: Tracer, name: str, handler: Handler, retry: RetrySettings) -> None:
        self._tracer = tracer
        self._name = name
        self._handler = handler
        self._max_attempts = retry.policy_for(name).max_attempts

    async def handle(self, event: RecordingEvent, ctx: Context) -> None:
        if not trace.get_current_span().is_recording():
            # The message is not sampled, so neither would its attempts be: no span to make.
            await self._handler.handle(event, ctx)
            return
        attributes: dict[str, str | int] = {
            "recording_consumer.handler": self._name,
            "recording_consumer.attempt": ctx.attempt,
        }
        with self._tracer.start_as_current_span(
            f"handle {self._name}",
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                await self._handler.handle(event, ctx)
            except BaseException as exc:
                given_up = isinstance(exc, PermanentFailure) or ctx.attempt >= self._max_attempts
                span.set_attribute("recording_consumer.result", "failed" if given_up else "retry")
                span.set_attribute("error.type", type(exc).__qualname__)
                if isinstance(exc, RetryLater) and exc.delay is not None:
                    span.set_attribute("recording_consumer.retry_delay", exc.delay)
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, error_line(exc)))
                raise
            span.set_attribute("recording_consumer.result", "ok")


class DeadLetters(Protocol):
    """Where the worker sends the messages it gives up on."""

    async def publish(self, record: Record, value: bytes | None, failure: Failure) -> None: ...


class _TracedDeadLetters:
    """Dead letters carrying the context of the message's span instead of the original's."""

    def __init__(self, inner: DeadLetters) -> None:
        self._inner = inner

    async def publish(self, record: Record, value: bytes | None, failure: Failure) -> None:
        headers = tuple(inject(record.headers))
        await self._inner.publish(msgspec.structs.replace(record, headers=headers), value, failure)


def _traced(publish: Publish) -> Publish:
    async def traced(
        topic: str,
        value: bytes,
        *,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes | None]] = (),
    ) -> None:
        await publish(topic, value, key=key, headers=inject(headers))

    return traced


def _with_ids(write: Callable[..., Any]) -> Callable[..., Any]:
    def with_ids(event: str, **fields: Any) -> Any:
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            fields["trace_id"] = trace.format_trace_id(span.trace_id)
            fields["span_id"] = trace.format_span_id(span.span_id)
        return write(event, **fields)

    return with_ids


def _exporters_asked(environ: Mapping[str, str]) -> list[str]:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    named = environ.get("OTEL_TRACES_EXPORTER")
    if named is None:
        endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        return ["otlp"] if any(environ.get(e) for e in endpoints) else []
    names = [n.strip() for n in named.split(",") if n.strip() and n.strip() != "none"]
    unknown = sorted(set(names) - {"otlp", "console"})
    if unknown:
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER: {', '.join(unknown)} not supported (otlp, console, none)",
            "OTEL_TRACES_EXPORTER",
        )
    return names


def _otlp_exporter(environ: Mapping[str, str]) -> Any:
    protocol = environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    )
    if protocol not in (None, "http/protobuf"):
        raise ConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol} not supported (http/protobuf)",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()

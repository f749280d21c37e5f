"""OpenTelemetry spans of real worker runs against the broker, kept by the SDK's in-memory
exporter: one consumer span per message, one child span per handler attempt, the context
taken from the message and carried on into dead letters and published events."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import msgspec
import pytest
from aiokafka import AIOKafkaProducer
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode
from structlog.testing import capture_logs

from consumer.deadletters import commands as dlq
from consumer.engine.worker import Worker
from consumer.errors import RetryLater
from consumer.events import RecordingEvent
from consumer.handler_api import Context, Handler
from consumer.handlers.publish import PublishHandler, PublishOptions
from consumer.observability import tracing
from consumer.observability.observers import Observers
from consumer.settings.config import Settings
from tests._support.kafka_helpers import printer, read_topic, recording_message, settings_for

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for workers built in the test, every ended span kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    yield exporter
    tracing.stop()


def traced_settings(bootstrap: str, topic: str, **overrides: str) -> Settings:
    return settings_for(
        bootstrap,
        topic,
        topic,
        RETRY__INITIAL_DELAY="0.01",
        RETRY__MAX_DELAY="0.05",
        RETRY__MAX_ATTEMPTS="3",
        **overrides,
    )


async def run_worker(
    settings: Settings,
    handlers: dict[str, Handler],
    messages: Sequence[tuple[bytes, bytes, list[tuple[str, bytes]]]],
) -> None:
    """Produce (key, value, headers) messages, then run a worker until it is idle."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    await producer.start()
    try:
        for key, value, headers in messages:
            await producer.send_and_wait(settings.kafka.topic, value, key=key, headers=headers)
    finally:
        await producer.stop()
    worker = Worker(settings, handlers, Observers(settings))
    await asyncio.wait_for(worker.run(until_idle=1.0), 60)


def finished(exporter: InMemorySpanExporter, kind: SpanKind) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.kind is kind]


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def parent_of(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


class Scripted:
    """Raises what `failures` holds for the first attempts, then succeeds."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.current: list[int] = []

    async def handle(self, event: RecordingEvent, ctx: Context) -> None:
        self.current.append(trace.get_current_span().get_span_context().span_id)
        if self.failures:
            raise self.failures.pop(0)


async def test_a_handled_message_is_one_consumer_span_with_a_handler_child(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    spans: InMemorySpanExporter,
) -> None:
    """One consumer span with the messaging attributes, the event's and the outcome; one
    handler span, its child, current while the handler ran; the canonical line has the ids."""
    await create_topic(kafka_bootstrap, unique_name)
    handler = Scripted()
    key, value = recording_message("r-1")
    with capture_logs() as logs:
        await run_worker(
            traced_settings(kafka_bootstrap, unique_name), {"log": handler}, [(key, value, [])]
        )
    (consumer,) = finished(spans, SpanKind.CONSUMER)
    assert consumer.name == f"process {unique_name}"
    assert attributes(consumer) == {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": unique_name,
        "messaging.destination.partition.id": "0",
        "messaging.kafka.offset": 0,
        "messaging.consumer.group.name": unique_name,
        "messaging.kafka.message.key": "r-1",
        "recording_consumer.recording_id": "r-1",
        "recording_consumer.status": "complete",
        "recording_consumer.event_type": "recordingAvailable",
        "recording_consumer.outcome": "handled",
    }
    assert consumer.parent is None
    (attempt,) = finished(spans, SpanKind.INTERNAL)
    assert attempt.name == "handle log"
    assert parent_of(attempt) == consumer.context.span_id
    assert attempt.context.trace_id == consumer.context.trace_id
    assert attributes(attempt) == {
        "recording_consumer.handler": "log",
        "recording_consumer.attempt": 1,
        "recording_consumer.result": "ok",
    }
    assert handler.current == [attempt.context.span_id]
    (line,) = [line for line in logs if line.get("outcome") == "handled"]
    assert line["trace_id"] == f"{consumer.context.trace_id:032x}"
    assert line["span_id"] == f"{consumer.context.span_id:016x}"


async def test_retried_twice_then_handled_shows_each_attempt(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    spans: InMemorySpanExporter,
) -> None:
    """Two failures (one a RetryLater with its delay), then success: one consumer span over
    all three attempts, three handler children with their attempt, result and error."""
    await create_topic(kafka_bootstrap, unique_name)
    handler = Scripted(RuntimeError("media server said no"), RetryLater("busy", delay=0.02))
    key, value = recording_message("r-2")
    with capture_logs() as logs:
        await run_worker(
            traced_settings(kafka_bootstrap, unique_name), {"log": handler}, [(key, value, [])]
        )
    (consumer,) = finished(spans, SpanKind.CONSUMER)
    assert attributes(consumer)["recording_consumer.outcome"] == "handled"
    assert [event.name for event in consumer.events] == ["retry scheduled"] * 2
    attempts = sorted(finished(spans, SpanKind.INTERNAL), key=lambda s: s.start_time or 0)
    assert [parent_of(s) for s in attempts] == [consumer.context.span_id] * 3
    assert [attributes(s)["recording_consumer.attempt"] for s in attempts] == [1, 2, 3]
    assert [attributes(s)["recording_consumer.result"] for s in attempts] == [
        "retry",
        "retry",
        "ok",
    ]
    assert attributes(attempts[0])["error.type"] == "RuntimeError"
    assert attempts[0].status.status_code is StatusCode.ERROR
    assert attributes(attempts[1])["recording_consumer.retry_delay"] == 0.02
    assert handler.current == [s.context.span_id for s in attempts]
    retried = [line for line in logs if line.get("outcome") == "retried"]
    assert {line["trace_id"] for line in retried} == {f"{consumer.context.trace_id:032x}"}


async def test_dead_lettered_message_with_traceparent_carries_its_context_on(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    spans: InMemorySpanExporter,
) -> None:
    """A message with a traceparent that fails every attempt: its consumer span is the
    traceparent's child, ends as dead_lettered with an error status, and the dead letter's
    traceparent names the consumer span (not the original's); `dlq replay` sends it back with
    the context of a send span, the consumer span's child."""
    await create_topic(kafka_bootstrap, unique_name)
    handler = Scripted(*(RuntimeError("no") for _ in range(3)))
    key, value = recording_message("r-3")
    headers = [("traceparent", TRACEPARENT.encode()), ("tracestate", b"vendor=1")]
    settings = traced_settings(kafka_bootstrap, unique_name)
    await run_worker(settings, {"log": handler}, [(key, value, headers)])
    (consumer,) = finished(spans, SpanKind.CONSUMER)
    assert f"{consumer.context.trace_id:032x}" == TRACE_ID
    assert parent_of(consumer) == int(PARENT_ID, 16)
    assert consumer.context.trace_state.get("vendor") == "1"
    assert attributes(consumer)["recording_consumer.outcome"] == "dead_lettered"
    assert consumer.status.status_code is StatusCode.ERROR
    attempts = finished(spans, SpanKind.INTERNAL)
    assert sorted(attributes(s)["recording_consumer.result"] for s in attempts) == [
        "failed",
        "retry",
        "retry",
    ]
    (dead,) = await read_topic(kafka_bootstrap, f"{unique_name}.dlq")
    sent = dict(dead.headers)
    assert sent["traceparent"].decode() == f"00-{TRACE_ID}-{consumer.context.span_id:016x}-01"
    assert sent["tracestate"] == b"vendor=1"
    assert [name for name, _ in dead.headers].count("traceparent") == 1

    await dlq.replay(
        settings.kafka,
        f"{unique_name}.dlq",
        f"{unique_name}.replay",
        to=unique_name,
        error_class=None,
        handler=None,
        recording_id=None,
        dry_run=False,
        say=printer(io.StringIO()),
        stamp=tracing.replayed,
    )
    (send,) = finished(spans, SpanKind.PRODUCER)
    assert parent_of(send) == consumer.context.span_id
    assert attributes(send)["messaging.destination.name"] == unique_name
    _, again = await read_topic(kafka_bootstrap, unique_name)
    resent = dict(again.headers)
    assert resent["traceparent"].decode() == f"00-{TRACE_ID}-{send.context.span_id:016x}-01"


async def test_published_events_carry_the_handler_span_as_parent(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    spans: InMemorySpanExporter,
) -> None:
    """The publish handler's output continues the trace: its traceparent names the attempt
    span of `publish`, whose consumer span is the incoming traceparent's child."""
    await create_topic(kafka_bootstrap, unique_name)
    target = f"{unique_name}.out"
    await create_topic(kafka_bootstrap, target)
    key, value = recording_message("r-4")
    publish = PublishHandler(PublishOptions(topic=target, published_by="test"))
    settings = traced_settings(kafka_bootstrap, unique_name)
    await run_worker(
        msgspec.structs.replace(settings, routes={"default": ["publish"]}),
        {"publish": publish},
        [(key, value, [("traceparent", TRACEPARENT.encode())])],
    )
    (consumer,) = finished(spans, SpanKind.CONSUMER)
    (attempt,) = finished(spans, SpanKind.INTERNAL)
    assert parent_of(consumer) == int(PARENT_ID, 16)
    assert parent_of(attempt) == consumer.context.span_id
    (out,) = await read_topic(kafka_bootstrap, target)
    sent = dict(out.headers)
    assert sent["traceparent"].decode() == f"00-{TRACE_ID}-{attempt.context.span_id:016x}-01"
    assert sent["published-by"] == b"test"


async def test_a_structured_cloudevent_brings_its_trace_context(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    spans: InMemorySpanExporter,
) -> None:
    """A structured-mode CloudEvent with the distributed-tracing extension (no headers): the
    consumer span is the child of the envelope's traceparent."""
    await create_topic(kafka_bootstrap, unique_name)
    key, data = recording_message("r-5")
    envelope = (
        b'{"specversion":"1.0","id":"e-1","source":"/bandwidth","type":"recordingAvailable",'
        b'"datacontenttype":"application/json","traceparent":"' + TRACEPARENT.encode() + b'",'
        b'"data":' + data + b"}"
    )
    settings = traced_settings(kafka_bootstrap, unique_name, EVENTS__ENVELOPE="cloudevents")
    await run_worker(settings, {"log": Scripted()}, [(key, envelope, [])])
    (consumer,) = finished(spans, SpanKind.CONSUMER)
    assert attributes(consumer)["recording_consumer.outcome"] == "handled"
    assert parent_of(consumer) == int(PARENT_ID, 16)


def test_tracing_is_off_and_the_worker_untouched_without_otel_variables() -> None:
    """No OTEL_* variable (or only a service name, or OTEL_SDK_DISABLED): tracing stays off,
    and the worker's observers carry no tracer (it then runs its untraced delivery and its
    handlers as given)."""
    for environ in (
        {},
        {"OTEL_SERVICE_NAME": "x"},
        {
            "OTEL_SDK_DISABLED": "true",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
        },
        {"OTEL_TRACES_EXPORTER": "none"},
    ):
        assert tracing.start_from_environment(environ) is False
    settings = settings_for("127.0.0.1:9", "t", "g")
    assert Observers(settings).tracer is None


async def test_an_unsampled_message_makes_no_spans_and_passes_its_context_on(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """Sampling off: the handler runs as usual, no span is exported, and the published event
    still carries the incoming trace, marked not sampled."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    try:
        await create_topic(kafka_bootstrap, unique_name)
        target = f"{unique_name}.out"
        await create_topic(kafka_bootstrap, target)
        key, value = recording_message("r-6")
        publish = PublishHandler(PublishOptions(topic=target, published_by="test"))
        settings = traced_settings(kafka_bootstrap, unique_name)
        unsampled = f"00-{TRACE_ID}-{PARENT_ID}-00"
        await run_worker(
            msgspec.structs.replace(settings, routes={"default": ["publish"]}),
            {"publish": publish},
            [(key, value, [("traceparent", unsampled.encode())])],
        )
    finally:
        tracing.stop()
    assert exporter.get_finished_spans() == ()
    (out,) = await read_topic(kafka_bootstrap, target)
    sent = dict(out.headers)["traceparent"].decode()
    assert sent.startswith(f"00-{TRACE_ID}-")
    assert sent.endswith("-00")
    assert sent != unsampled  # the consumer span's id, not the producer's

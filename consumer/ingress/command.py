"""``recording-consumer ingest``: check the settings, open the spool, serve until SIGTERM.

Stopping: the callback port stops accepting, requests in flight get ``shutdown_grace`` seconds
to be stored and answered, the forwarder goes on while Kafka acknowledges and the producer
flushes (together for up to another ``shutdown_grace``); what Kafka has not acknowledged stays in
the spool for the next start. Exit 0.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import structlog

from consumer.errors import ConfigError
from consumer.gc_tuning import freeze_start_up_objects
from consumer.ingress.app import CallbackApp
from consumer.ingress.auth import Credentials, credentials
from consumer.ingress.link import KafkaLink
from consumer.ingress.metrics import IngressMetrics
from consumer.ingress.spool import Spool, SpoolError
from consumer.ingress.store import Store
from consumer.observability import server as probes_server
from consumer.observability import serving, tracing
from consumer.settings.config import Settings

CLOSE_AT_LEAST = 1.0
"""Seconds the producer gets to flush and close even when the grace is spent."""
FD_RESERVE = 128
"""Open files kept free of connections: Kafka's sockets, the spool, the probes, logging."""


def ingest(settings: Settings) -> int:
    """Run the ingress until SIGTERM or SIGINT; ConfigError (exit 2) names a bad key."""
    from consumer.observability.logs import configure_logging

    ingress = settings.ingress
    accepted = credentials(ingress)
    configure_logging(settings.logging)
    tracing.start_from_environment()  # before the app: it traces callbacks or not
    asyncio.run(_serve(settings, accepted, _connection_cap(ingress.max_connections)))
    return 0


def _connection_cap(configured: int) -> int:
    """`configured`, lowered (with a warning) to what the open-file limit leaves room for."""
    limit = serving.raise_fd_limit()
    room = max(16, limit - FD_RESERVE - probes_server.LIMITS.max_connections)
    if configured > room:
        structlog.get_logger("consumer.ingress").warning(
            "ingress.max_connections lowered to fit the open-file limit",
            configured=configured,
            used=room,
            nofile=limit,
        )
        return room
    return configured


async def _serve(settings: Settings, accepted: Credentials | None, cap: int) -> None:
    ingress = settings.ingress
    log = structlog.get_logger("consumer.ingress")
    try:
        spool = Spool.open(Path(ingress.spool_dir), ingress.spool_max_bytes)
    except SpoolError as exc:
        raise ConfigError(f"ingress.spool_dir: {exc}", "ingress.spool_dir") from None
    for torn in spool.torn:
        log.warning(
            "spool record cut short (a crash mid-write): forwarded up to the cut, the rest dropped",
            file=torn.file,
            offset=torn.offset,
            dropped_bytes=torn.dropped_bytes,
        )
    if len(spool):
        log.info("forwarding the spool left by the last run first", callbacks=len(spool))
    link = KafkaLink(settings.kafka, ingress.max_body_bytes, ingress.ack_timeout)
    metrics = IngressMetrics(
        spool_messages=lambda: len(spool),
        spool_bytes=lambda: spool.size_bytes,
        kafka_up=lambda: float(link.up),
    )
    store = Store(
        link,
        spool,
        max_bytes=ingress.spool_max_bytes,
        metrics=metrics,
    )
    app = CallbackApp(ingress, accepted, store, metrics)
    stopping = asyncio.Event()

    def unready() -> list[str]:
        if stopping.is_set():
            return ["draining for shutdown"]
        return (
            []
            if store.can_store()
            else ["cannot store: Kafka away and the spool full or unwritable"]
        )

    probes = probes_server.Probes(metrics.registry, lambda: [], unready)
    limits = serving.Limits(
        max_connections=cap,
        header_timeout=ingress.header_timeout,
        keep_alive_timeout=ingress.keep_alive_timeout,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    freeze_start_up_objects()
    closing_by = loop.time() + ingress.shutdown_grace  # moved on once the stop begins
    try:
        # Both ports open before the task group: a port in use is a ConfigError naming its
        # key, not an ExceptionGroup around one.
        async with (
            probes_server.probe_endpoint(settings.observability.listen, probes),
            serving.serve(app.answer, ingress.listen, limits, key="ingress.listen") as callbacks,
            asyncio.TaskGroup() as tasks,
        ):
            connecting = tasks.create_task(link.connect())
            forwarding = tasks.create_task(store.forward())
            reporting = tasks.create_task(app.refusals.report())
            log.info("taking callbacks", listen=ingress.listen, path=ingress.path)
            await stopping.wait()
            log.info("stopping: answering requests in flight", grace=ingress.shutdown_grace)
            await serving.shutdown(callbacks, ingress.shutdown_grace)
            connecting.cancel()
            reporting.cancel()
            store.stop()
            # Forwarding and the producer's flush share one grace, so the whole stop stays
            # within twice the grace and a few seconds (the listeners' last second, the
            # producer's CLOSE_AT_LEAST): deploy files allow 2 x grace + 10 s.
            closing_by = loop.time() + ingress.shutdown_grace
            try:
                async with asyncio.timeout_at(closing_by):
                    await asyncio.shield(forwarding)
            except TimeoutError:
                forwarding.cancel()
    finally:
        await link.close(max(closing_by - loop.time(), CLOSE_AT_LEAST))
        left = len(spool)
        spool.close()
    log.info("stopped", spooled=left)

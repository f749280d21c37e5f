"""Drills: worker processes against a real broker through the failures the delivery promises
must survive. Each counts lost, duplicated and overlapping attempts from the handlers' journal
(tests/_support/drill.py) and prints its figures (``pytest -m drill -s`` shows them).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from consumer.cli.produce import produce
from consumer.deadletters import headers as dl
from consumer.devkit.broker import LocalBroker
from consumer.kafka.topics import admin_client
from consumer.settings.config import KafkaSettings
from tests._support.drill import (
    attempts,
    check,
    events,
    eventually,
    every_offset,
    fully_committed,
    log_of,
)
from tests._support.kafka_helpers import (
    APPEND_HANDLER,
    REPO,
    committed_and_end,
    exit_status,
    read_topic,
    wait_for,
    worker_process,
)

pytestmark = pytest.mark.drill

POISON_5MB = b"{" + b"x" * (5 * 1024 * 1024)
"""Not JSON: undecodable, so it is dead-lettered at once."""


async def test_second_worker_joining_while_handlers_outlast_the_session(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    tmp_path: Path,
) -> None:
    """Default session settings, handlers running 12 s (past the 10 s session timeout) when a
    second worker joins: the first keeps its membership until they finish; no attempt runs in
    two processes at once, nothing is lost."""
    started = time.monotonic()
    await create_topic(kafka_bootstrap, unique_name, partitions=2)
    await produce(KafkaSettings(bootstrap_servers=kafka_bootstrap), unique_name, events(10, 10))
    journal = tmp_path / "journal"
    knobs: dict[str, Any] = {"TEST_HANDLER_DELAY": "12", "TEST_JOURNAL_FILE": str(journal)}
    first_file, second_file = tmp_path / "first", tmp_path / "second"
    first = worker_process(kafka_bootstrap, unique_name, first_file, **knobs)
    await wait_for(lambda: len(attempts(journal)) == 10, 90, "ten handlers running")
    second = worker_process(kafka_bootstrap, unique_name, second_file, **knobs)
    await wait_for(lambda: "partitions assigned" in log_of(second_file), 120, "second's share")
    await eventually(fully_committed(kafka_bootstrap, unique_name), 60, "all committed")
    for worker in (first, second):
        worker.send_signal(signal.SIGTERM)
    for worker in (first, second):
        assert await exit_status(worker) == 0
    assert "partitions revoked" in log_of(first_file), "no rebalance happened"

    expected = await every_offset(kafka_bootstrap, unique_name)
    report = check("second worker joins", journal, expected, started)
    assert (report.overlapped, report.lost, report.duplicated) == (0, 0, 0)


async def test_broker_killed_mid_stream_and_restarted_after_20_s(
    private_broker: LocalBroker,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    tmp_path: Path,
) -> None:
    """The broker is SIGKILLed mid-stream and back after 20 s on the same storage: every event
    is handled and committed, and the worker process rides it out without restarting."""
    started = time.monotonic()
    bootstrap = private_broker.bootstrap
    await create_topic(bootstrap, unique_name, partitions=3)
    await produce(KafkaSettings(bootstrap_servers=bootstrap), unique_name, events(1200, 120))
    journal, handled = tmp_path / "journal", tmp_path / "handled"
    worker = worker_process(
        bootstrap,
        unique_name,
        handled,
        ENGINE__MAX_IN_FLIGHT="4",
        ENGINE__MAX_BUFFERED="40",
        ENGINE__FETCH_MAX_RECORDS="20",
        TEST_HANDLER_DELAY="0.02",
        TEST_JOURNAL_FILE=str(journal),
    )
    await wait_for(lambda: len(attempts(journal)) >= 150, 90, "150 handled")
    await asyncio.to_thread(private_broker.kill)
    # The outage's length is what the drill is about, not a wait for some condition.
    await asyncio.sleep(20)
    assert worker.poll() is None, "the worker exited while the broker was down"
    await asyncio.to_thread(private_broker.restart)
    await eventually(fully_committed(bootstrap, unique_name), 180, "all committed after restart")
    assert worker.poll() is None, "the worker restarted"
    worker.send_signal(signal.SIGTERM)
    assert await exit_status(worker) == 0
    assert log_of(handled).count('"worker started"') == 1

    expected = await every_offset(bootstrap, unique_name)
    report = check("broker down 20 s", journal, expected, started)
    assert (report.lost, report.overlapped) == (0, 0)
    assert report.handled == 1200


async def test_oversized_poison_message_ends_as_a_reference_and_others_flow(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    tmp_path: Path,
) -> None:
    """A 5 MB undecodable message, then traffic on three partitions, with max_buffered 20 and a
    dead-letter topic at the broker's 1 MB limit: the poison becomes a reference record, its
    partition moves on, and every partition is committed to the end."""
    started = time.monotonic()
    limit = str(6 * 1024 * 1024)
    await create_topic(kafka_bootstrap, unique_name, 3, configs={"max.message.bytes": limit})
    dlq_topic = f"{unique_name}.dlq"
    await create_topic(kafka_bootstrap, dlq_topic, 3)  # an operator's, at the default limit
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, acks="all", max_request_size=7 * 1024 * 1024
    )
    await producer.start()
    try:
        await producer.send_and_wait(unique_name, POISON_5MB, partition=0)
        for n, (key, value) in enumerate(events(300, 30)):
            await producer.send(unique_name, value, key=key, partition=n % 3)
        await producer.flush()
    finally:
        await producer.stop()
    journal = tmp_path / "journal"
    worker = worker_process(
        kafka_bootstrap,
        unique_name,
        tmp_path / "handled",
        until_idle=2,
        ENGINE__ORDERING="partition",
        ENGINE__MAX_BUFFERED="20",
        ENGINE__FETCH_MAX_RECORDS="10",
        TEST_JOURNAL_FILE=str(journal),
    )
    assert await exit_status(worker, 180) == 0, log_of(tmp_path / "handled")[-3000:]

    committed, end = await committed_and_end(kafka_bootstrap, unique_name, unique_name)
    assert committed == end == {0: 101, 1: 100, 2: 100}
    (reference,) = await read_topic(kafka_bootstrap, dlq_topic)
    headers = dict(reference.headers)
    assert (reference.key, reference.value) == (None, b"")
    assert headers[dl.VALUE_TOO_LARGE] == str(len(POISON_5MB)).encode()
    assert (headers[dl.PARTITION], headers[dl.OFFSET]) == (b"0", b"0")
    assert headers[dl.ERROR_CLASS] == b"DecodeError"
    expected = await every_offset(kafka_bootstrap, unique_name) - {(0, 0)}
    report = check("5 MB poison", journal, expected, started)
    assert (report.lost, report.duplicated) == (0, 0)


async def test_dead_letter_topic_refusing_writes_then_fixed(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    tmp_path: Path,
) -> None:
    """With on_unwritable = "stall", while the dead-letter topic refuses every write, nothing past
    the poison message is committed and the other partitions keep flowing; once fixed, nothing
    is lost."""
    started = time.monotonic()
    await create_topic(kafka_bootstrap, unique_name, 3)
    dlq_topic = f"{unique_name}.dlq"
    await create_topic(kafka_bootstrap, dlq_topic, 3, configs={"max.message.bytes": "1"})
    poison = b"not json"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        stream = events(245, 49)
        for key, value in stream[:5]:
            await producer.send(unique_name, value, key=key, partition=0)
        await producer.send(unique_name, poison, partition=0)  # offset 5
        for n, (key, value) in enumerate(stream[5:]):
            await producer.send(unique_name, value, key=key, partition=n % 3)
        await producer.flush()
    finally:
        await producer.stop()
    journal, handled = tmp_path / "journal", tmp_path / "handled"
    worker = worker_process(
        kafka_bootstrap,
        unique_name,
        handled,
        ENGINE__ORDERING="partition",
        ENGINE__MAX_BUFFERED="30",
        ENGINE__FETCH_MAX_RECORDS="10",
        DEAD_LETTER__ON_UNWRITABLE="stall",
        TEST_JOURNAL_FILE=str(journal),
    )

    async def others_done_and_refused_twice() -> bool:
        committed, end = await committed_and_end(kafka_bootstrap, unique_name, unique_name)
        refused = log_of(handled).count("dead-letter publish failed")
        return committed[1] == end[1] and committed[2] == end[2] and refused >= 2

    await eventually(others_done_and_refused_twice, 90, "partitions 1 and 2 done, DLQ refusing")
    committed, end = await committed_and_end(kafka_bootstrap, unique_name, unique_name)
    assert committed[0] == 5, "nothing committed past the poison message"
    assert end[0] == 86
    async with admin_client(KafkaSettings(bootstrap_servers=kafka_bootstrap)) as admin:
        normal = {"max.message.bytes": "1048588"}
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, dlq_topic, normal)])
    await eventually(fully_committed(kafka_bootstrap, unique_name), 90, "all committed")
    worker.send_signal(signal.SIGTERM)
    assert await exit_status(worker) == 0

    (dead,) = await read_topic(kafka_bootstrap, dlq_topic)
    assert dead.value == poison
    expected = await every_offset(kafka_bootstrap, unique_name) - {(0, 5)}
    report = check("dead-letter topic refusing", journal, expected, started)
    assert (report.lost, report.duplicated) == (0, 0)


BAD_SETTINGS = [
    ({"KAFKA__BOOTSTRAP_SERVERS": '"kafka:notaport"'}, "kafka.bootstrap_servers"),
    ({"KAFKA__BOOTSTRAP_SERVERS": '" , "'}, "kafka.bootstrap_servers"),
    ({"KAFKA__TOPIC": '""'}, "kafka.topic"),
    ({"KAFKA__TOPIC": '"a topic"'}, "kafka.topic"),
    ({"KAFKA__GROUP_ID": '""'}, "kafka.group_id"),
    ({"KAFKA__SESSION_TIMEOUT_MS": "-1"}, "kafka.session_timeout_ms"),
    ({"KAFKA__HEARTBEAT_INTERVAL_MS": "20000"}, "kafka.heartbeat_interval_ms"),
    ({"KAFKA__MAX_POLL_INTERVAL_MS": "0"}, "kafka.max_poll_interval_ms"),
    ({"ENGINE__FETCH_MAX_RECORDS": "0"}, "engine.fetch_max_records"),
    ({"ENGINE__MAX_IN_FLIGHT": "0"}, "engine.max_in_flight"),
    ({"ENGINE__MAX_IN_FLIGHT": "-1"}, "engine.max_in_flight"),
    ({"ENGINE__MAX_BUFFERED": "0"}, "engine.max_buffered"),
    ({"ENGINE__COMMIT_INTERVAL": "0"}, "engine.commit_interval"),
    ({"ENGINE__COMMIT_INTERVAL": "-1"}, "engine.commit_interval"),
    ({"ENGINE__COMMIT_EVERY": "0"}, "engine.commit_every"),
    ({"ENGINE__SHUTDOWN_GRACE": "0"}, "engine.shutdown_grace"),
    ({"ENGINE__SHUTDOWN_GRACE": "-5"}, "engine.shutdown_grace"),
    ({"ENGINE__SHUTDOWN_GRACE": "300"}, "engine.shutdown_grace"),
    ({"ENGINE__DEDUPE_WINDOW": "-1"}, "engine.dedupe_window"),
    ({"RETRY__TIMEOUT": "-1"}, "retry.timeout"),
    ({"RETRY__MAX_ATTEMPTS": "0"}, "retry.max_attempts"),
    ({"RETRY__INITIAL_DELAY": "-0.5"}, "retry.initial_delay"),
    ({"RETRY__MAX_DELAY": "0"}, "retry.max_delay"),
    ({"RETRY__HANDLERS__APPEND__TIMEOUT": "0"}, "retry.handlers.append.timeout"),
    ({"DEAD_LETTER__ERROR_MAX_BYTES": "0"}, "dead_letter.error_max_bytes"),
    ({"DEAD_LETTER__TOPIC": '"same"', "KAFKA__TOPIC": '"same"'}, "dead_letter.topic"),
    ({"DEAD_LETTER__MAX_REQUEST_SIZE": "10"}, "dead_letter.max_request_size"),
    ({"DEAD_LETTER__REPLICATION_FACTOR": "0"}, "dead_letter.replication_factor"),
    ({"DEAD_LETTER__MIN_INSYNC_REPLICAS": "0"}, "dead_letter.min_insync_replicas"),
    (
        {"DEAD_LETTER__REPLICATION_FACTOR": "2", "DEAD_LETTER__MIN_INSYNC_REPLICAS": "3"},
        "dead_letter.min_insync_replicas",
    ),
    ({"ROUTES__DEFAULT": '["nope"]'}, "unknown handler 'nope'"),
    ({"PLUGINS__PATHS__MINE": "no_such_module_x:Handler", "ROUTES__DEFAULT": '["mine"]'}, "mine"),
    (
        {"ROUTES__DEFAULT": '["download"]', "HANDLERS__DOWNLOAD__DIRECTORY": "5"},
        "handlers.download.directory",
    ),
    ({"ROUTES__DEFAULT": '["download"]'}, "BANDWIDTH_CLIENT_ID is not set"),
    (
        {"ROUTES__DEFAULT": '["download"]', "HANDLERS__DOWNLOAD__API_URL": "https://x.test/"},
        "handlers.download.api_url",
    ),
]


async def test_each_bad_setting_stops_run_and_check_config_naming_the_key(
    kafka_bootstrap: str, unique_name: str
) -> None:
    """Every setting that cannot work exits 2 naming its key, from run and check-config alike
    (plugins and handler options included: check-config builds and starts handlers as run does)."""

    async def exit_and_stderr(command: str, case: dict[str, str]) -> tuple[int, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("BANDWIDTH_", "RECORDING_"))
        }
        env |= {
            "PYTHONPATH": str(REPO),
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "RECORDING_CONSUMER__KAFKA__TOPIC": unique_name,
            "RECORDING_CONSUMER__KAFKA__GROUP_ID": unique_name,
            "RECORDING_CONSUMER__PLUGINS__PATHS__APPEND": APPEND_HANDLER,
            "RECORDING_CONSUMER__ROUTES__DEFAULT": '["append"]',
        }
        env |= {f"RECORDING_CONSUMER__{k}": v for k, v in case.items()}
        config = str(REPO / "tests" / "_support" / "minimal.toml")
        until_idle = ["--until-idle", "1"] if command == "run" else []
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "consumer", command, "--config", config, *until_idle),
            env=env,
            cwd=REPO,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(120):
                _, stderr = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            return -1, "timed out: the setting was not rejected at start-up"
        return process.returncode or 0, stderr.decode()

    slots = asyncio.Semaphore(6)

    async def case_result(command: str, case: dict[str, str], key: str) -> str | None:
        async with slots:
            status, stderr = await exit_and_stderr(command, case)
        if status == 2 and key in stderr and "Traceback" not in stderr:
            return None
        return f"{command} {case}: exit {status}, expected 2 naming {key}: {stderr[-500:]}"

    results = await asyncio.gather(
        *(
            case_result(command, case, key)
            for case, key in BAD_SETTINGS
            for command in ("run", "check-config")
        )
    )
    failures = [r for r in results if r is not None]
    assert not failures, "\n".join(failures)

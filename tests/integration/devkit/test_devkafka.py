"""The local Kafka launcher: a broker that really works, and env overrides that start nothing."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from consumer.devkit.broker import LocalBroker, bootstrap_servers, free_port, ports
from consumer.devkit.broker.__main__ import main
from consumer.devkit.broker.liveness import exited
from consumer.devkit.broker.properties import render_server_properties
from consumer.kafka.topics import admin_client
from consumer.settings.config import KafkaSettings


async def test_broker_answers_metadata(kafka_bootstrap: str) -> None:
    """The session broker serves cluster metadata with at least one broker in it."""
    async with admin_client(KafkaSettings(bootstrap_servers=kafka_bootstrap)) as admin:
        cluster = await admin.describe_cluster()
    assert cluster["brokers"]


async def test_produced_message_round_trips(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """A message produced to a fresh topic is consumed back with its key and value intact."""
    await create_topic(kafka_bootstrap, unique_name, partitions=2)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(unique_name, b"payload", key=b"key")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        unique_name,
        bootstrap_servers=kafka_bootstrap,
        group_id=unique_name,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        batches = await consumer.getmany(timeout_ms=20_000, max_records=1)
    finally:
        await consumer.stop()
    records = [record for batch in batches.values() for record in batch]
    assert [(r.key, r.value) for r in records] == [(b"key", b"payload")]


def test_env_bootstrap_starts_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With KAFKA_BOOTSTRAP_SERVERS set, bootstrap_servers() returns it and creates no state."""
    home = tmp_path / "devkafka-home"
    monkeypatch.setenv("DEVKAFKA_HOME", str(home))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka.example:9092,kafka2.example:9093")
    assert bootstrap_servers() == "kafka.example:9092,kafka2.example:9093"
    assert not home.exists()


def test_server_properties_use_given_ports(tmp_path: Path) -> None:
    """The rendered config listens and advertises on the ports it was given, on 127.0.0.1."""
    rendered = render_server_properties(19092, 19093, tmp_path / "data")
    lines = set(rendered.splitlines())
    assert "listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093" in lines
    assert "advertised.listeners=PLAINTEXT://127.0.0.1:19092" in lines
    assert "controller.quorum.voters=1@127.0.0.1:19093" in lines
    assert f"log.dirs={tmp_path / 'data'}" in lines


async def test_killed_broker_restarts_with_its_topics_and_offsets(
    private_broker: LocalBroker,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
) -> None:
    """After kill() and restart(), the same address serves the topic and the committed offset."""
    bootstrap = private_broker.bootstrap
    await create_topic(bootstrap, unique_name)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(unique_name, b"kept")
    finally:
        await producer.stop()
    tp = TopicPartition(unique_name, 0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=unique_name, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.commit({tp: 1})
    finally:
        await consumer.stop()

    await asyncio.to_thread(private_broker.kill)
    assert private_broker.recorded_pid() is None
    assert await asyncio.to_thread(private_broker.restart) == bootstrap

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=unique_name,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        # Until the restarted broker has loaded __consumer_offsets, its coordinator answers
        # "not available" and aiokafka reports no commit: ask again, within a deadline.
        async with asyncio.timeout(60):
            while True:
                committed = await consumer.committed(tp)
                if committed is not None:
                    break
                await asyncio.sleep(0.2)
        assert committed == 1
        await consumer.seek_to_beginning(tp)
        record = await asyncio.wait_for(consumer.getone(), 30)
    finally:
        await consumer.stop()
    assert record.value == b"kept"


def test_up_refuses_a_taken_default_port(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A taken 9092 is an error naming the way out, not a silent switch to another port."""
    monkeypatch.setenv("DEVKAFKA_HOME", str(tmp_path / "home"))
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        monkeypatch.setattr(ports, "DEFAULT_PORT", held.getsockname()[1])
        assert main(["up"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert f"port {ports.DEFAULT_PORT} on 127.0.0.1 is in use" in err
    assert "up --port N" in err
    assert not (tmp_path / "home" / "run" / "broker.pid").exists()


def test_command_line_describes_every_subcommand() -> None:
    """`python -m consumer.devkit.broker --help` (the Makefile's command) describes each one."""
    command = [sys.executable, "-m", "consumer.devkit.broker", "--help"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for name in ("up", "down", "status", "bootstrap"):
        (row,) = [n for n, line in enumerate(lines) if line.strip().startswith(name)]
        described = " ".join(lines[row : row + 3]).removeprefix(f"    {name}").strip()
        assert len(described) > 20, (name, described)
    assert "started first if it is not" in " ".join(lines)


async def test_stop_returns_once_the_broker_has_exited(tmp_path: Path) -> None:
    """`stop` (what `down` runs) returns the pid only after the JVM is gone and its port free."""
    broker = LocalBroker(tmp_path / "broker", port=free_port())
    await asyncio.to_thread(broker.start)
    port = broker.port
    assert port is not None
    pid = await asyncio.to_thread(broker.stop)
    assert pid is not None
    assert exited(pid)
    assert ports.port_is_free(port)
    assert broker.recorded_pid() is None

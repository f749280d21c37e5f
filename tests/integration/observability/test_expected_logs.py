"""aiokafka's expected start-up errors (a topic being auto-created, a fresh broker's group
coordinator) are held back for a while; real errors, and the same ones lasting, are not."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

from aiokafka.errors import GroupCoordinatorNotAvailableError, NotCoordinatorForGroupError

from consumer.devkit.broker import LocalBroker
from consumer.observability.expected_logs import GRACE, ExpectedAtFirst

FIRST_RUN = """
import asyncio, json, logging, sys
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from consumer.settings.config import LoggingSettings
from consumer.observability.logs import configure_logging

configure_logging(LoggingSettings(format="json"))
said = []

class Said(logging.Handler):
    def emit(self, record):
        said.append(record.getMessage())

logging.getLogger("aiokafka").addHandler(Said())

async def main(bootstrap, topic):
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"first")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=topic, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        got = await asyncio.wait_for(consumer.getone(), 60)
    finally:
        await consumer.stop()
    return got.value.decode()

value = asyncio.run(main(*sys.argv[1:]))
print(json.dumps({"consumed": value, "aiokafka_said": said}))
"""


def record(msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord("aiokafka.cluster", level, __file__, 1, msg, args, None)


def test_expected_records_are_held_back_within_their_grace_only() -> None:
    """A missing topic and an unavailable (or dead) coordinator are held back for GRACE seconds
    from their first report, each topic on its own clock; after that, and for other errors (another
    coordinator error, an unauthorized topic), the record passes."""
    now = 0.0
    expected = ExpectedAtFirst(clock=lambda: now)
    missing = "Topic %s not found in cluster metadata"
    coordinator = "Group Coordinator Request failed: %s"
    assert not expected.filter(record(missing, "new-topic"))
    assert not expected.filter(record(coordinator, GroupCoordinatorNotAvailableError()))
    assert expected.filter(record(coordinator, NotCoordinatorForGroupError()))
    dead = "Marking the coordinator dead (node %s)for group %s."
    assert not expected.filter(record(dead, 1, "group", level=logging.WARNING))
    assert expected.filter(record("Topic %s is not authorized for this client", "new-topic"))
    now = GRACE - 1
    assert not expected.filter(record(missing, "new-topic"))
    assert not expected.filter(record(missing, "other-topic"))
    now = GRACE
    assert expected.filter(record(missing, "new-topic"))
    assert expected.filter(record(coordinator, GroupCoordinatorNotAvailableError()))
    assert expected.filter(record(dead, 1, "group", level=logging.WARNING))
    assert not expected.filter(record(missing, "other-topic"))


def test_a_first_run_on_a_fresh_broker_writes_no_library_error(
    private_broker: LocalBroker, unique_name: str
) -> None:
    """Producing to a topic that does not exist yet and consuming it in a new group on a
    freshly started broker: aiokafka reports the missing topic (and possibly the coordinator
    not being ready) at error level, yet the configured log has no error or warning line."""
    result = subprocess.run(
        [sys.executable, "-c", FIRST_RUN, private_broker.bootstrap, unique_name],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    *lines, last = [json.loads(line) for line in result.stdout.splitlines()]
    assert last["consumed"] == "first"
    assert f"Topic {unique_name} not found in cluster metadata" in last["aiokafka_said"]
    loud = [line for line in lines if line["level"] in ("warning", "error", "critical")]
    assert loud == []

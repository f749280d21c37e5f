"""Dead letters as tests write and read them."""

from __future__ import annotations

import msgspec
from aiokafka import AIOKafkaProducer

from consumer.deadletters.headers import Failure
from consumer.deadletters.publisher import DeadLetterPublisher
from consumer.errors import DecodeError, PermanentFailure
from consumer.handler_api import Record
from consumer.settings.config import DeadLetterSettings, KafkaSettings

FIRST = 1_795_000_000.25  # 2026-11-18T11:06:40.250Z


LAST = 1_795_000_012.5


async def dead_letters(bootstrap: str, source: str) -> str:
    """Three handler failures and one undecodable message in a fresh `<source>.dlq`."""
    dlq_topic = f"{source}.dlq"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        publisher = DeadLetterPublisher(
            producer,
            KafkaSettings(bootstrap_servers=bootstrap),
            dlq_topic,
            "g",
            DeadLetterSettings(),
        )
        await publisher.ensure_topic()
        for offset, (rid, failure) in enumerate(FAILURES):
            record = Record(source, 0, offset, rid.encode(), (("traceparent", b"t"),), 1)
            value = msgspec.json.encode({"recordingId": rid, "status": "complete"})
            await publisher.publish(record, value, failure)
        undecodable = Failure.from_exception(
            DecodeError("Expected `int`, got `str`", "$.channels"),
            handler=None,
            first_failure=FIRST,
            last_failure=LAST,
        )
        await publisher.publish(Record(source, 0, 3, None, (), 1), UNDECODABLE, undecodable)
    finally:
        await producer.stop()
    return dlq_topic


UNDECODABLE = b'{"eventType": "recordingAvailable", "channels": "one"}'
"""Fails at $.channels, and has no recordingId to show."""


FAILURES = [
    ("r-1", Failure.from_exception(PermanentFailure("404"), handler="download", attempts=1)),
    ("r-2", Failure.from_exception(TimeoutError("slow"), handler="download", attempts=5)),
    ("r-3", Failure.from_exception(PermanentFailure("410"), handler="notify", attempts=1)),
]

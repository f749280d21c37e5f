"""Records anyone who can write to the topic could send to stop the worker, sent to a real
broker and read by worker processes (``recording-consumer run --until-idle``): null header
values, a header key that is not UTF-8, a header too large to dead-letter. Each lies between
good records: the good ones are handled, the poison one is dead-lettered with the reason, the
partition is committed to its end, and the worker exits 0.
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.codec import gzip_encode
from aiokafka.consumer.fetcher import PartitionRecords
from aiokafka.record._crc32c import crc as crc32c

from consumer.deadletters import headers as dl
from consumer.kafka import fetch_errors
from consumer.kafka.fetch_errors import BadHeaderKey, unreadable_batch
from consumer.kafka.record_batches import reread
from consumer.settings.config import KafkaSettings
from tests._support.kafka_helpers import (
    committed_and_end,
    exit_status,
    handled_records,
    read_topic,
    recording_message,
    worker_process,
)

LENGTH_AT, CRC_AT, CRC_FROM, ATTRIBUTES_AT, HEADER_SIZE = 8, 17, 21, 21, 61
"""Record batch v2: where its length, CRC (and the bytes it covers), attributes and records are."""
PLACEHOLDER, BAD_KEY = "BADKEY", b"bad\xff\xfe!"
"""A header key as produced, and the bytes it is changed to: not UTF-8, the same length."""
Sent = tuple[bytes, bytes, list[tuple[str, bytes | None]]]
"""A record to produce: key, value, headers."""


async def send_batch(
    producer: AIOKafkaProducer,
    topic: str,
    partition: int,
    records: list[Sent],
    *,
    gzip: bool = False,
) -> None:
    """`records` (key, value, headers) as one batch (compressed by hand with `gzip`); a header
    named `PLACEHOLDER` goes to the broker named `BAD_KEY`, with the batch's CRC made right, as
    a hostile producer would send it."""
    batch = producer.create_batch()
    for key, value, headers in records:
        assert batch.append(key=key, value=value, timestamp=None, headers=headers) is not None
    data = batch._build()
    at = bytes(data).find(PLACEHOLDER.encode())
    if at >= 0:
        data[at : at + len(BAD_KEY)] = BAD_KEY
    if gzip:
        data[HEADER_SIZE:] = gzip_encode(bytes(data[HEADER_SIZE:]))
        struct.pack_into(">i", data, LENGTH_AT, len(data) - 12)
        data[ATTRIBUTES_AT + 1] |= 0x01
    struct.pack_into(">I", data, CRC_AT, crc32c(bytes(data[CRC_FROM:])))
    await (await producer.send_batch(batch, topic, partition=partition))


def good(n: int) -> Sent:
    key, value = recording_message(f"r-{n}")
    return key, value, [("traceparent", b"t")]


def run_log(handled: Path) -> str:
    return handled.with_name(handled.name + ".log").read_text()


async def test_null_header_values_are_dead_lettered_and_the_partition_goes_on(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    tmp_path: Path,
) -> None:
    """envelope "auto": a null content-type counts as absent (the raw callback is handled), a
    null ce_id beside the other ce_* headers is undecodable and dead-lettered naming ce_id;
    the records around them are handled, all is committed, the run exits 0."""
    await create_topic(kafka_bootstrap, unique_name, 1)
    ce = [("ce_specversion", b"1.0"), ("ce_source", b"/s"), ("ce_type", b"t")]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for key, value, headers in [
            good(0),
            (*recording_message("r-1"), [("content-type", None)]),
            good(2),
            (*recording_message("r-3"), [*ce, ("ce_id", None)]),
            good(4),
        ]:
            await producer.send_and_wait(unique_name, value, key=key, headers=headers)
    finally:
        await producer.stop()
    handled = tmp_path / "handled"
    worker = worker_process(
        kafka_bootstrap, unique_name, handled, until_idle=1.0, EVENTS__ENVELOPE="auto"
    )
    assert await exit_status(worker, 120) == 0, run_log(handled)[-3000:]

    assert sorted(rid for _, _, rid in handled_records(handled)) == ["r-0", "r-1", "r-2", "r-4"]
    assert await committed_and_end(kafka_bootstrap, unique_name, unique_name) == ({0: 5}, {0: 5})
    (dead,) = await read_topic(kafka_bootstrap, f"{unique_name}.dlq")
    headers = dict(dead.headers)
    assert (headers[dl.OFFSET], headers[dl.ERROR_CLASS]) == (b"3", b"DecodeError")
    assert headers[dl.ERROR_PATH] == b"ce_id"
    assert headers["ce_id"] is None, "the null header is dead-lettered as it came"
    assert dead.value == recording_message("r-3")[1]
    assert "engine error" not in run_log(handled)


async def test_a_header_key_that_is_not_utf8_is_dead_lettered_not_a_stop(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    tmp_path: Path,
) -> None:
    """One batch of five on partition 0, its middle record with a header key that is not UTF-8
    (aiokafka cannot unpack that batch), and records on partition 1 fetched alongside: every
    good record is handled once, the bad one is dead-lettered with the reason and its key
    escaped, both partitions are committed to their end, and the run exits 0 (not 3)."""
    await create_topic(kafka_bootstrap, unique_name, 2)
    poison = (b"r-2", recording_message("r-2")[1], [(PLACEHOLDER, b"v"), ("n", None)])
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await send_batch(producer, unique_name, 1, [good(n) for n in range(10, 13)])
        await send_batch(producer, unique_name, 0, [good(0), good(1), poison, good(3), good(4)])
        await send_batch(producer, unique_name, 1, [good(n) for n in range(13, 16)])
        await send_batch(producer, unique_name, 0, [good(5)])
    finally:
        await producer.stop()
    handled = tmp_path / "handled"
    worker = worker_process(kafka_bootstrap, unique_name, handled, until_idle=1.0)
    assert await exit_status(worker, 120) == 0, run_log(handled)[-3000:]

    expected = [f"r-{n}" for n in (0, 1, 3, 4, 5, *range(10, 16))]
    assert sorted(rid for _, _, rid in handled_records(handled)) == sorted(expected)
    committed, end = await committed_and_end(kafka_bootstrap, unique_name, unique_name)
    assert committed == end == {0: 6, 1: 6}
    (dead,) = await read_topic(kafka_bootstrap, f"{unique_name}.dlq")
    headers = dict(dead.headers)
    assert (headers[dl.PARTITION], headers[dl.OFFSET]) == (b"0", b"2")
    assert headers[dl.ERROR_CLASS] == b"DecodeError"
    assert headers[dl.ERROR_MESSAGE] == b"header key 'bad\\xff\\xfe!' is not UTF-8"
    assert (headers["bad\\xff\\xfe!"], headers["n"]) == (b"v", None)
    assert (dead.key, dead.value) == poison[:2]
    assert '"header key not UTF-8, batch re-read"' in run_log(handled)


async def test_a_bad_header_key_is_told_from_an_unreadable_batch_by_aiokafkas_frames(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """The worker finds a bad header key's partition and batch in aiokafka's record-unpacking
    frame; if aiokafka renames that generator or its locals, or stops raising
    UnicodeDecodeError there, this fails (and the worker would exit 3 again)."""
    code = PartitionRecords._unpack_records.__code__
    assert code.co_name == fetch_errors._UNPACKING
    assert {"tp", "next_batch"} <= set(code.co_varnames)
    await create_topic(kafka_bootstrap, unique_name, 1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        await send_batch(producer, unique_name, 0, [good(0)])
        await send_batch(producer, unique_name, 0, [good(1), (b"k", b"v", [(PLACEHOLDER, b"")])])
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tp = TopicPartition(unique_name, 0)
        consumer.assign([tp])
        # The first batch reads, and is lost with the exception the second one raises.
        with pytest.raises(UnicodeDecodeError) as raised:
            await consumer.getmany(tp, timeout_ms=10_000)
    finally:
        await consumer.stop()
    assert unreadable_batch(raised.value) == BadHeaderKey(tp, 1)


async def test_a_header_too_large_to_dead_letter_is_left_out_and_said_so(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    tmp_path: Path,
) -> None:
    """An 8-byte value with a 1,048,460-byte header, topics at the broker's defaults: the dead
    letter keeps the value and key, leaves the headers out and says their size in
    dlq.headers_dropped; the partition is committed past it and the run exits 0."""
    await create_topic(kafka_bootstrap, unique_name, 1)
    await create_topic(kafka_bootstrap, f"{unique_name}.dlq", 1)  # at the broker's default
    big = [("x-big", b"h" * 1_048_460)]
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, acks="all", max_request_size=2 * 1024 * 1024
    )
    await producer.start()
    try:
        for key, value, headers in [good(0), (b"k", b"not json", big), good(2)]:
            await producer.send_and_wait(unique_name, value, key=key, headers=headers)
    finally:
        await producer.stop()
    handled = tmp_path / "handled"
    worker = worker_process(kafka_bootstrap, unique_name, handled, until_idle=1.0)
    assert await exit_status(worker, 120) == 0, run_log(handled)[-3000:]

    assert sorted(rid for _, _, rid in handled_records(handled)) == ["r-0", "r-2"]
    assert await committed_and_end(kafka_bootstrap, unique_name, unique_name) == ({0: 3}, {0: 3})
    (dead,) = await read_topic(kafka_bootstrap, f"{unique_name}.dlq")
    headers = dict(dead.headers)
    assert (dead.key, dead.value) == (b"k", b"not json")
    assert "x-big" not in headers
    assert headers[dl.HEADERS_DROPPED] == str(len("x-big") + 1_048_460).encode()
    assert (headers[dl.OFFSET], headers[dl.ERROR_CLASS]) == (b"1", b"DecodeError")
    log = run_log(handled)
    assert '"dead-lettered as a reference record: headers too large"' in log
    assert "dead-letter publish failed" not in log


async def test_a_group_resuming_inside_a_batch_with_a_bad_header_key_goes_on(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    tmp_path: Path,
) -> None:
    """The group's committed offset lies after the bad record, inside its batch (as after a
    rebalance): the records from there on are handled, the one before it is not read again."""
    await create_topic(kafka_bootstrap, unique_name, 1)
    poison: Sent = (b"r-0", recording_message("r-0")[1], [(PLACEHOLDER, b"v")])
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await send_batch(producer, unique_name, 0, [poison, good(1), good(2)])
    finally:
        await producer.stop()
    tp = TopicPartition(unique_name, 0)
    committer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap, group_id=unique_name, enable_auto_commit=False
    )
    await committer.start()
    try:
        committer.assign([tp])
        await committer.commit({tp: 1})
    finally:
        await committer.stop()
    handled = tmp_path / "handled"
    worker = worker_process(kafka_bootstrap, unique_name, handled, until_idle=1.0)
    assert await exit_status(worker, 120) == 0, run_log(handled)[-3000:]

    assert [rid for _, _, rid in handled_records(handled)] == ["r-1", "r-2"]
    assert await committed_and_end(kafka_bootstrap, unique_name, unique_name) == ({0: 3}, {0: 3})
    assert await read_topic(kafka_bootstrap, f"{unique_name}.dlq") == []


async def test_re_reading_leaves_aborted_transactions_out(
    kafka_bootstrap: str,
    unique_name: str,
    create_topic: Callable[..., Awaitable[None]],
    tmp_path: Path,
) -> None:
    """Under read_committed, an aborted transaction before the batch with a bad header key is
    left out when the worker re-reads from there, as aiokafka leaves it out: its record is not
    handled; the committed ones after it are, and the partition is committed to its end."""
    await create_topic(kafka_bootstrap, unique_name, 1)
    txn = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=unique_name)
    await txn.start()
    try:
        await txn.begin_transaction()
        key, value = recording_message("r-aborted")
        await txn.send_and_wait(unique_name, value, key=key, partition=0)
        await txn.abort_transaction()
    finally:
        await txn.stop()
    poison: Sent = (b"r-2", recording_message("r-2")[1], [(PLACEHOLDER, b"v")])
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await send_batch(producer, unique_name, 0, [good(1), poison, good(3)])
    finally:
        await producer.stop()
    handled = tmp_path / "handled"
    worker = worker_process(kafka_bootstrap, unique_name, handled, until_idle=1.0)
    assert await exit_status(worker, 120) == 0, run_log(handled)[-3000:]

    assert [rid for _, _, rid in handled_records(handled)] == ["r-1", "r-3"]
    committed, end = await committed_and_end(kafka_bootstrap, unique_name, unique_name)
    assert committed == end == {0: 5}  # the aborted record, its marker, three more
    (dead,) = await read_topic(kafka_bootstrap, f"{unique_name}.dlq")
    assert (dead.key, dead.value) == poison[:2]
    assert dict(dead.headers)[dl.ERROR_MESSAGE].endswith(b"is not UTF-8")


async def test_re_reading_a_compressed_batch_refuses_only_the_bad_record(
    kafka_bootstrap: str, unique_name: str, create_topic: Callable[..., Awaitable[None]]
) -> None:
    """A gzip batch whose middle record has a header key that is not UTF-8 reads whole from
    the broker: all three records with their keys, values and headers, the middle one refused
    with the key escaped, and the next offset past the batch."""
    await create_topic(kafka_bootstrap, unique_name, 1)
    poison: Sent = (b"k", b"not json", [(PLACEHOLDER, b"v"), ("n", None)])
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await send_batch(producer, unique_name, 0, [good(0), poison, good(2)], gzip=True)
    finally:
        await producer.stop()
    tp = TopicPartition(unique_name, 0)

    read = await reread(KafkaSettings(bootstrap_servers=kafka_bootstrap), tp, 0, 0)

    assert [(r.offset, r.key, r.value) for r in read.records] == [
        (0, *good(0)[:2]),
        (1, b"k", b"not json"),
        (2, *good(2)[:2]),
    ]
    assert read.records[1].headers == (("bad\\xff\\xfe!", b"v"), ("n", None))
    assert read.records[0].headers == (("traceparent", b"t"),)
    assert read.refused == {1: "header key 'bad\\xff\\xfe!' is not UTF-8"}
    assert read.next_offset == 3

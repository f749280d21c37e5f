"""Fetch errors told apart by the exception types aiokafka raises, located by its record-unpacking
frame: aiokafka's own readers run on batches made unreadable by hand (pure units, no broker).

Written against aiokafka 0.14.0, the version requirements.lock pins; if an upgrade changes the
types, the frame or its locals, these fail rather than the worker exiting 3 on a bad header key.
"""

from __future__ import annotations

import struct
from importlib.metadata import version

import pytest
from aiokafka import TopicPartition
from aiokafka.consumer.fetcher import PartitionRecords
from aiokafka.record._crc32c import crc as crc32c
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords, _MemoryRecordsPy

from consumer.errors import UnreadableBatch
from consumer.kafka import fetch_errors
from consumer.kafka.fetch_errors import BadHeaderKey, unreadable_batch

WRITTEN_AGAINST = "0.14.0"
TP = TopicPartition("recordings", 3)
BASE = 40
"""The crafted batch's base offset."""
CRC_AT, CRC_FROM, ATTRIBUTES_AT = 17, 21, 21
BAD_KEY = b"bad\xff"


def batch(*, codec: int = 0, crc: bool = True, header_key: bytes = b"ok!\x00") -> bytes:
    """One v2 batch of two records at `BASE`, its attributes naming `codec` (the payload left
    uncompressed), the second record's header key replaced by `header_key`, the CRC made right
    unless `crc` is False."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    builder.append(0, timestamp=None, key=b"k0", value=b"v0", headers=[])
    builder.append(1, timestamp=None, key=b"k1", value=b"v1", headers=[("ok!\x00", b"h")])
    data = bytearray(builder.build())
    struct.pack_into(">q", data, 0, BASE)
    at = bytes(data).find(b"ok!\x00")
    data[at : at + 4] = header_key
    data[ATTRIBUTES_AT + 1] |= codec
    struct.pack_into(">I", data, CRC_AT, crc32c(bytes(data[CRC_FROM:])) ^ (0 if crc else 1))
    return bytes(data)


def fetch_error(data: bytes, reader: type = MemoryRecords) -> BaseException:
    """What reading `data` as a fetched partition raises, as a consumer's getmany would."""
    records = PartitionRecords(TP, reader(data), [], BASE, None, None, True, "read_uncommitted")
    try:
        list(records)
    except Exception as exc:
        return exc
    raise AssertionError("the batch was read")


def test_aiokafkas_unpacking_frame_is_where_the_worker_reads_it() -> None:
    """The generator and the locals the worker reads the partition and batch from still exist,
    in the aiokafka version these tests were checked against (bump WRITTEN_AGAINST only after
    they pass on the new one)."""
    code = PartitionRecords._unpack_records.__code__
    assert code.co_name == fetch_errors._UNPACKING
    assert set(fetch_errors._UNPACKING_LOCALS) <= set(code.co_varnames)
    assert version("aiokafka") == WRITTEN_AGAINST


@pytest.mark.parametrize(
    ("data", "cause"),
    [
        (batch(crc=False), "CorruptRecordException: Invalid CRC - "),
        (batch(codec=5), "UnsupportedCodecError: Unknown compression codec 0x05"),
        (batch(codec=1), "BadGzipFile: Not a gzipped file"),
        (batch(codec=2), "DecompressionError: snappy: corrupt input"),
        (batch(codec=3), "DecompressionError: lz4: "),
        (batch(codec=4), "DecompressionError: Unknown frame descriptor"),
    ],
    ids=["crc", "unknown-codec", "gzip", "snappy", "lz4", "zstd"],
)
def test_a_batch_aiokafka_cannot_read_is_told_by_type_with_its_partition_and_offset(
    data: bytes, cause: str
) -> None:
    """A bad CRC, an unknown codec, and a payload no decompressor reads (a hostile producer
    can send one with a valid CRC): each is an unreadable batch at its partition and base
    offset, its cause one line naming the error."""
    found = unreadable_batch(fetch_error(data))
    assert isinstance(found, UnreadableBatch)
    assert (found.topic, found.partition, found.offset) == (TP.topic, TP.partition, BASE)
    assert found.cause.startswith(cause), found.cause


@pytest.mark.parametrize("reader", [MemoryRecords, _MemoryRecordsPy])
def test_a_header_key_that_is_not_utf8_is_told_from_an_unreadable_batch(reader: type) -> None:
    """aiokafka's C reader raises UnicodeDecodeError, its pure-Python one wraps it in
    CorruptRecordException: either way the batch is sound and re-read without aiokafka."""
    error = fetch_error(batch(header_key=BAD_KEY), reader)
    assert isinstance(error, UnicodeDecodeError) or isinstance(error.__cause__, UnicodeDecodeError)
    assert unreadable_batch(error) == BadHeaderKey(TP, BASE)


def test_errors_of_other_types_or_from_elsewhere_are_not_about_a_batch() -> None:
    """A type aiokafka does not raise for an unreadable batch, or an unreadable-batch type raised
    outside its unpacking frame, is left for the caller to raise."""
    assert unreadable_batch(RuntimeError("boom")) is None
    with pytest.raises(EOFError) as raised:
        raise EOFError("not from a batch")
    assert unreadable_batch(raised.value) is None

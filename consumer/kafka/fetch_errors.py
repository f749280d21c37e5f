"""What a fetch error the client cannot recover from is about: which partition, which batch.

The exception's type says what went wrong: a batch aiokafka cannot read (`UNREADABLE`), a
header key that is not UTF-8, a batch larger than the fetch limit. aiokafka does not say where
(a missing codec, a bad CRC): the partition and the batch's base offset are read from the
locals of its record-unpacking frame in the error's own traceback, and nothing else is.
tests/integration/worker/test_poison_records.py fails if that frame changes;
tests/unit/test_unreadable.py if the types it raises do.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass

import cramjam
from aiokafka import TopicPartition
from aiokafka.errors import CorruptRecordException, RecordTooLargeError, UnsupportedCodecError

from consumer.errors import UnreadableBatch
from consumer.redaction import error_line

UNREADABLE: tuple[type[BaseException], ...] = (
    CorruptRecordException,  # a bad CRC; a malformed record (its pure-Python reader wraps it)
    UnsupportedCodecError,  # a codec it lacks, or none it knows
    gzip.BadGzipFile,  # the decompressors' own errors, as aiokafka.codec lets them through
    EOFError,
    zlib.error,
    cramjam.DecompressionError,  # snappy, lz4, zstd
)
"""What aiokafka raises for a batch it cannot read, whatever the reader (C or Python)."""
_UNPACKING = "_unpack_records"
"""aiokafka's generator that checks CRCs, decompresses and yields a partition's records."""
_UNPACKING_LOCALS = ("tp", "next_batch")
"""Its locals naming the partition and the batch being read."""


@dataclass(frozen=True, slots=True)
class BadHeaderKey:
    """A batch aiokafka cannot unpack only because a record's header key is not UTF-8: the
    batch itself is sound, so the worker reads it without aiokafka (`header_keys`)."""

    tp: TopicPartition
    offset: int
    """The batch's base offset."""


def unreadable_batch(exc: BaseException) -> UnreadableBatch | BadHeaderKey | None:
    """What batch `exc` (raised by a fetch) is about, or None if it is not about one."""
    if isinstance(exc, RecordTooLargeError) and len(exc.args) == 4:
        _, tp, offset, limit = exc.args
        cause = f"RecordTooLargeError: a batch is larger than the fetch limit of {limit} bytes"
        return UnreadableBatch(tp.topic, tp.partition, offset, cause)
    # aiokafka's C reader raises the UnicodeDecodeError; its pure-Python one wraps it.
    header_key = isinstance(exc, UnicodeDecodeError) or (
        isinstance(exc, CorruptRecordException) and isinstance(exc.__cause__, UnicodeDecodeError)
    )
    if not header_key and not isinstance(exc, UNREADABLE):
        return None
    where = _batch_of(exc)
    if where is None:
        return None  # not raised while a batch was read
    tp, offset = where
    if header_key and offset is not None:
        return BadHeaderKey(tp, offset)
    return UnreadableBatch(tp.topic, tp.partition, offset, error_line(exc))


def _batch_of(exc: BaseException) -> tuple[TopicPartition, int | None] | None:
    """The partition and base offset of the batch being unpacked when `exc` was raised."""
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == _UNPACKING:
            tp, batch = (frame.f_locals.get(name) for name in _UNPACKING_LOCALS)
            if isinstance(tp, TopicPartition):
                offset = getattr(batch, "base_offset", None)
                return tp, offset if isinstance(offset, int) else None
        tb = tb.tb_next
    return None

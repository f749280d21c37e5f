"""What a fetch error the client cannot recover from is about: which partition, which batch.

aiokafka raises these from `getmany` without saying which partition (a missing codec) or which
offset (a bad CRC) failed. The exception's type says what went wrong; where is read from the
locals of aiokafka's frame that unpacks the batch, in the error's own traceback (an error from
anywhere else is not about a batch). tests/integration/worker/test_poison_records.py fails if
that frame changes.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka.errors import RecordTooLargeError

from consumer.errors import UnreadableBatch

_UNPACKING = "_unpack_records"
"""aiokafka's generator that checks CRCs, decompresses and yields a partition's records."""


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
    header_key = isinstance(exc, UnicodeDecodeError) or isinstance(
        exc.__cause__, UnicodeDecodeError
    )
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == _UNPACKING:
            tp, batch = frame.f_locals.get("tp"), frame.f_locals.get("next_batch")
            if isinstance(tp, TopicPartition):
                offset = getattr(batch, "base_offset", None)
                if header_key and isinstance(offset, int):
                    return BadHeaderKey(tp, offset)
                return UnreadableBatch(tp.topic, tp.partition, offset, _cause(exc))
        tb = tb.tb_next
    return None


def _cause(exc: BaseException) -> str:
    # KafkaError's str repeats the class name and errno; the first argument is the reason.
    reason = exc.args[0] if exc.args else ""
    return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__

"""Where a fetch error the client cannot recover from is: partition, offset and cause.

aiokafka raises these from `getmany` without saying which partition (a missing codec) or which
offset (a bad CRC) failed. Both are locals of the frame that unpacks the batch, so the error's
own traceback is where they are read from; an error from anywhere else is not about a batch.
"""

from __future__ import annotations

from aiokafka import TopicPartition
from aiokafka.errors import RecordTooLargeError

from consumer.errors import UnreadableBatch

_UNPACKING = "_unpack_records"
"""aiokafka's generator that checks CRCs, decompresses and yields a partition's records."""


def unreadable_batch(exc: BaseException) -> UnreadableBatch | None:
    """The batch `exc` (raised by a fetch) failed to read, or None if it is not about one."""
    if isinstance(exc, RecordTooLargeError) and len(exc.args) == 4:
        _, tp, offset, limit = exc.args
        cause = f"RecordTooLargeError: a batch is larger than the fetch limit of {limit} bytes"
        return UnreadableBatch(tp.topic, tp.partition, offset, cause)
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == _UNPACKING:
            tp, batch = frame.f_locals.get("tp"), frame.f_locals.get("next_batch")
            if isinstance(tp, TopicPartition):
                offset = getattr(batch, "base_offset", None)
                return UnreadableBatch(tp.topic, tp.partition, offset, _cause(exc))
        tb = tb.tb_next
    return None


def _cause(exc: BaseException) -> str:
    # KafkaError's str repeats the class name and errno; the first argument is the reason.
    reason = exc.args[0] if exc.args else ""
    return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__

"""Reading again the batch aiokafka cannot unpack because a header key is not UTF-8.

Kafka's protocol says header keys are strings, but the broker stores whatever bytes a producer
sends, and aiokafka then fails on that whole batch, at every fetch: one record would stop its
partition for good. Seeking past it cannot help either, since a fetch returns whole batches and
aiokafka decodes a batch from its first record. So the worker reads those batches once more
here, straight from the broker, with header keys decoded leniently: every record goes on as
usual, and the ones whose header key is not UTF-8 are dead-lettered (`Reread.refused`).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from aiokafka import TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.codec import gzip_decode, lz4_decode, snappy_decode, zstd_decode
from aiokafka.errors import CorruptRecordException, UnsupportedCodecError, for_code
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.util import decode_varint
from aiokafka.structs import ConsumerRecord

from consumer.kafka.security import client_options
from consumer.settings.config import KafkaSettings

_BATCH = struct.Struct(">qiibIhiqqqhii")
"""Record batch v2's header: base offset, length, leader epoch, magic, CRC, attributes, last
offset delta, first and max timestamps, producer id and epoch, base sequence, record count."""
_CODECS: dict[int, Callable[[bytes], bytes]] = {
    1: gzip_decode,
    2: snappy_decode,
    3: lz4_decode,
    4: zstd_decode,
}
_TRANSACTIONAL, _CONTROL, _LOG_APPEND_TIME = 0x10, 0x20, 0x08
_FETCH_BYTES = 16 * 1024 * 1024
_KEY_SHOWN = 100
"""Characters of a bad header key quoted in the dead letter's reason."""


@dataclass
class Reread:
    """Records of one partition, read without aiokafka's record reader."""

    records: list[ConsumerRecord[bytes, bytes]] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)
    """Offset to why that record cannot be used (a header key that is not UTF-8)."""
    next_offset: int = 0
    """Where aiokafka may go on: past the last batch read."""


async def reread(kafka: KafkaSettings, tp: TopicPartition, start: int, through: int) -> Reread:
    """The records of `tp` from offset `start` to the end of the batch whose base offset is
    `through`, as the worker's consumer would have returned them (aborted transactions and
    control batches left out under read_committed)."""
    read_committed = kafka.isolation_level == "read_committed"
    client = AIOKafkaClient(**client_options(kafka))
    await client.bootstrap()
    try:
        leader = (await client.fetch_all_metadata()).leader_for_partition(tp)
        result = Reread(next_offset=start)
        pending: list[tuple[int, int]] = []
        """Aborted transactions (producer id, first offset) not yet reached."""
        seen: set[tuple[int, int]] = set()
        aborting: set[int] = set()
        while True:
            request = FetchRequest(
                0, 1, _FETCH_BYTES, int(read_committed),
                [(tp.topic, [(tp.partition, result.next_offset, _FETCH_BYTES)])],
            )  # fmt: skip
            response = await client.send(leader, request)
            ((_, ((_, error, _, *data),)),) = response.topics
            if error:
                raise for_code(error)(f"re-reading {tp.topic}/{tp.partition}")
            if read_committed:
                # As aiokafka reads them: v11 added a field after the aborted transactions.
                aborted = data[2] if response.API_VERSION >= 11 else data[-2]
                known = {*pending, *((pid, first) for pid, first in aborted or ())} - seen
                pending = sorted(known, key=lambda txn: txn[1])
            before = result.next_offset
            for batch in _batches(data[-1]):
                if batch.base > through:
                    break
                while read_committed and pending and pending[0][1] <= batch.base:
                    seen.add(pending[0])
                    aborting.add(pending.pop(0)[0])
                if batch.attributes & _CONTROL:
                    if batch.is_abort_marker():
                        aborting.discard(batch.producer_id)
                elif not (batch.attributes & _TRANSACTIONAL and batch.producer_id in aborting):
                    batch.read_into(result, tp)
                result.next_offset = batch.next_offset
            if result.next_offset == before:
                raise CorruptRecordException(f"no batch of {tp.topic}/{tp.partition} at {before}")
            # `start` may lie inside the batch at `through`: a group resuming mid-batch.
            if result.next_offset > through:
                return result
    finally:
        await client.close()


@dataclass(frozen=True, slots=True)
class _Batch:
    base: int
    next_offset: int
    attributes: int
    first_timestamp: int
    max_timestamp: int
    producer_id: int
    count: int
    body: bytes

    def is_abort_marker(self) -> bool:
        # A control record's key: version (int16), then type (0: abort, 1: commit).
        records = self._body()
        _, pos = decode_varint(records, 0)  # length
        pos += 1  # attributes
        _, pos = decode_varint(records, pos)  # timestamp delta
        _, pos = decode_varint(records, pos)  # offset delta
        length, pos = decode_varint(records, pos)
        return bool(length >= 4 and struct.unpack_from(">h", records, pos + 2)[0] == 0)

    def read_into(self, result: Reread, tp: TopicPartition) -> None:
        records, pos = self._body(), 0
        for _ in range(self.count):
            _, pos = decode_varint(records, pos)  # length
            pos += 1  # attributes, unused
            delta, pos = decode_varint(records, pos)
            offset_delta, pos = decode_varint(records, pos)
            key, pos = _bytes(records, pos)
            value, pos = _bytes(records, pos)
            count, pos = decode_varint(records, pos)
            offset = self.base + offset_delta
            headers: list[tuple[str, bytes | None]] = []
            for _ in range(count):
                name, pos = _bytes(records, pos)
                header, pos = _bytes(records, pos)
                try:
                    headers.append(((name or b"").decode(), header))
                except UnicodeDecodeError:
                    shown = (name or b"").decode(errors="backslashreplace")
                    headers.append((shown, header))
                    reason = f"header key '{shown[:_KEY_SHOWN]}' is not UTF-8"
                    result.refused.setdefault(offset, reason)
            if offset < result.next_offset:
                result.refused.pop(offset, None)
                continue  # before the start: read by whoever committed past it
            log_append = self.attributes & _LOG_APPEND_TIME
            timestamp = self.max_timestamp if log_append else self.first_timestamp + delta
            result.records.append(
                ConsumerRecord(
                    tp.topic, tp.partition, offset, timestamp,
                    int(bool(log_append)), key, value, None,
                    len(key) if key is not None else -1,
                    len(value) if value is not None else -1,
                    tuple(headers),
                )
            )  # fmt: skip

    def _body(self) -> bytearray:
        codec = self.attributes & 0x07
        if not codec:
            return bytearray(self.body)
        if codec not in _CODECS:
            raise UnsupportedCodecError(f"Unknown compression codec {codec:#04x}")
        return bytearray(_CODECS[codec](self.body))


def _batches(data: bytes | None) -> Iterator[_Batch]:
    """The whole v2 batches in a fetch response's records (a last, partial one is left out)."""
    data, pos = data or b"", 0
    while pos + _BATCH.size <= len(data):
        base, length, _, magic, _, attributes, last_delta, first, latest, producer, _, _, count = (
            _BATCH.unpack_from(data, pos)
        )
        end = pos + 12 + length
        if end > len(data):
            return
        if magic != 2:
            raise CorruptRecordException(f"record batch v{magic} has no headers to re-read")
        body = data[pos + _BATCH.size : end]
        yield _Batch(base, base + last_delta + 1, attributes, first, latest, producer, count, body)
        pos = end


def _bytes(buffer: bytearray, pos: int) -> tuple[bytes | None, int]:
    length, pos = decode_varint(buffer, pos)
    if length < 0:
        return None, pos
    return bytes(buffer[pos : pos + length]), pos + length

"""The partition Kafka's default partitioner gives a key: ``toPositive(murmur2(key)) % partitions``,
as the Java client (and aiokafka's `DefaultPartitioner`) computes it.

The ingress names the partition itself: aiokafka's partitioner lists the topic's partitions twice
per record and hashes in Python (about 2 µs for a recording id); ``murmurhash2`` is the same
hash in native code (0.2 µs). Tests compare the two, key for key.
"""

from __future__ import annotations

from murmurhash2 import murmurhash2

_SEED = 0x9747B28C
"""Kafka's murmur2 seed (``org.apache.kafka.common.utils.Utils.murmur2``)."""


def murmur2(key: bytes) -> int:
    """Kafka's murmur2 of `key`, as an unsigned 32-bit number."""
    return murmurhash2(key, _SEED)


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of `key` in a topic of `partitions` partitions (numbered from 0)."""
    return (murmurhash2(key, _SEED) & 0x7FFFFFFF) % partitions

"""The ingress's own partition choice is Kafka's default partitioner's, key for key."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner

from consumer.ingress.partitions import murmur2, partition_for

# Kafka's own murmur2 test vectors (clients' UtilsTest.testMurmur2), signed as Java has them.
KAFKA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize(("key", "expected"), KAFKA_VECTORS.items())
def test_murmur2_gives_the_java_clients_hash(key: bytes, expected: int) -> None:
    """Each of Kafka's test vectors hashes to the value the Java client's test expects."""
    assert murmur2(key) == expected & 0xFFFFFFFF


def test_partition_is_the_one_aiokafkas_default_partitioner_picks() -> None:
    """For keys of every length up to 80 bytes (every tail length, Bandwidth's ids included) and
    topics of 1 to 12 partitions, the partition equals aiokafka's DefaultPartitioner's."""
    chooser = random.Random(24)
    keys = [chooser.randbytes(n % 81) for n in range(2_000)]
    keys += [b"r-7c2d4b8e-5c1a-4f0e-9b0a-1234567890ab", b"c-2f1e0a9b", b""]
    default = DefaultPartitioner()
    for count in range(1, 13):
        partitions = list(range(count))
        for key in keys:
            assert partition_for(key, count) == default(key, partitions, partitions), (key, count)

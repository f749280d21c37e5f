"""The committer against a stand-in consumer: what reaches `commit` after a rebalance."""

from __future__ import annotations

from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError

from consumer.engine.committer import Committer
from consumer.engine.tally import Tally
from consumer.observability.health import Health
from consumer.settings.config import load_settings

MINE, GONE = TopicPartition("t", 0), TopicPartition("t", 1)


class Consumer:
    """Records commits; refuses, as aiokafka does, a commit naming an unassigned partition."""

    def __init__(self, assigned: set[TopicPartition]) -> None:
        self.assigned = assigned
        self.commits: list[dict[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        for tp in offsets:
            if tp not in self.assigned:
                raise IllegalStateError(f"Partition {tp} is not assigned")
        self.commits.append(dict(offsets))


async def test_a_partition_no_longer_assigned_does_not_block_the_others_commits() -> None:
    """Finished work of a partition the consumer no longer has (a batch recorded across a
    rebalance) is left out of the commit, so the partitions it still has keep committing."""
    settings = load_settings(environ={})
    committer = Committer(settings.engine, Tally(), Health(settings))
    consumer: Any = Consumer({MINE})
    for tp in (MINE, GONE):
        batch = committer.add(tp, [0, 1])
        committer.finish(batch, 0)
        committer.finish(batch, 1)

    await committer.commit(consumer)
    await committer.commit(consumer)

    assert consumer.commits == [{MINE: 2}]
    assert committer.committed_offset(MINE) == 2
    assert committer.committed_offset(GONE) is None

"""What observability reads of a worker: the worker satisfies these Protocols structurally.

Observability never imports the engine (nor the engine observability): the command line hands
the worker to the endpoint and the watchers, typed as a `WorkerView`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Protocol

from aiokafka import TopicPartition

from consumer.outcomes import Outcome
from consumer.settings.config import Settings


class Counts(Protocol):
    """The worker's tally: what it did since it started."""

    @property
    def outcomes(self) -> Counter[Outcome]: ...
    @property
    def messages(self) -> Mapping[tuple[Outcome, str, str], int]:
        """(outcome, status, event type) -> messages finished, unknown values as ``other``."""
        ...

    @property
    def retries(self) -> Mapping[str, int]: ...
    @property
    def dead_letters(self) -> Mapping[str, int]: ...
    @property
    def commits(self) -> int: ...
    @property
    def commit_failures(self) -> int: ...
    @property
    def rebalances(self) -> int: ...


class Load(Protocol):
    """How busy the worker is now."""

    @property
    def in_flight(self) -> int: ...
    @property
    def buffered(self) -> int: ...
    @property
    def paused(self) -> int: ...


class WorkerView(Protocol):
    """The few things the metrics, the watchers and the endpoint read of a worker."""

    @property
    def settings(self) -> Settings: ...
    @property
    def tally(self) -> Counts: ...

    def load(self) -> Load: ...
    def committed_offset(self, tp: TopicPartition) -> int | None: ...

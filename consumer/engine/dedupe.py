"""Dropping Bandwidth's repeated callbacks within a bounded window of recent successes."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable


class RecentlyHandled:
    """The last `size` keys handled successfully; a size of 0 remembers nothing."""

    __slots__ = ("_keys", "_size")

    def __init__(self, size: int) -> None:
        self._size = size
        # OrderedDict, not dict: popping the oldest key of a plain dict gets slower as
        # deleted slots pile up at its front.
        self._keys: OrderedDict[Hashable, None] = OrderedDict()

    def __contains__(self, key: Hashable) -> bool:
        return key in self._keys

    def add(self, key: Hashable) -> None:
        if self._size <= 0 or key in self._keys:
            return
        self._keys[key] = None
        if len(self._keys) > self._size:
            self._keys.popitem(last=False)

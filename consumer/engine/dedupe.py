"""Dropping Bandwidth's repeated callbacks within a bounded window of recent successes."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Hashable

KEPT_WHOLE = 2048
"""Values up to this many bytes are remembered as they are; longer ones by their digest."""


def fingerprint(value: bytes) -> Hashable:
    """What makes a message a repeat: its exact bytes.

    Not (recordingId, eventType, status): anyone who can produce to the topic could send a
    look-alike without a mediaUrl first, and the genuine event after it would be dropped as a
    repeat of work that was never done. Bandwidth's own retries are byte-identical. A callback
    (about 1 KB) is compared whole, which no collision can fool and costs no hashing beyond the
    dict's; a longer value by its BLAKE2b digest, so the window's memory stays bounded
    (``dedupe_window`` x `KEPT_WHOLE` bytes at most). The digest is wrapped in a tuple so it can
    never equal a short value.
    """
    if len(value) <= KEPT_WHOLE:
        return value
    return (hashlib.blake2b(value, digest_size=16).digest(),)


class RecentlyHandled:
    """The last `size` keys handled successfully; a size of 0 remembers nothing."""

    __slots__ = ("_keys", "_size")

    def __init__(self, size: int) -> None:
        self._size = size
        # OrderedDict, not dict: popping the oldest key of a plain dict gets slower as
        # deleted slots pile up at its front.
        self._keys: OrderedDict[Hashable, None] = OrderedDict()

    @property
    def size(self) -> int:
        return self._size

    def __contains__(self, key: Hashable) -> bool:
        return key in self._keys

    def add(self, key: Hashable) -> None:
        if self._size <= 0:
            return
        keys = self._keys
        keys[key] = None  # a key already here keeps its place: its first success counts
        if len(keys) > self._size:
            keys.popitem(last=False)

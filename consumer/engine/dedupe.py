"""Dropping Bandwidth's repeated callbacks within a bounded window of recent successes."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Hashable


def fingerprint(value: bytes) -> bytes:
    """What makes a message a repeat: its exact bytes, hashed.

    Not (recordingId, eventType, status): anyone who can produce to the topic could send a
    look-alike without a mediaUrl first, and the genuine event after it would be dropped as a
    repeat of work that was never done. Bandwidth's own retries are byte-identical. BLAKE2b, not
    `hash()`, so a repeat cannot be forged by collision.
    """
    return hashlib.blake2b(value, digest_size=16).digest()


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

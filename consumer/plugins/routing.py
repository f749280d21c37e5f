"""The routing table: which handlers run, in order, for an event's status."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Generic, TypeVar

from consumer.errors import PluginError
from consumer.events import Status

DEFAULT_ROUTE = "default"
T = TypeVar("T")


class Router(Generic[T]):
    """Maps a status to its handlers; statuses without a route, or none at all, get ``default``."""

    __slots__ = ("_default", "_table")

    def __init__(self, routes: Mapping[str, Sequence[str]], handlers: Mapping[str, T]) -> None:
        missing = sorted({n for names in routes.values() for n in names} - handlers.keys())
        if missing:
            known = ", ".join(sorted(handlers)) or "none"
            raise PluginError(f"routes name unknown handlers {missing}; available: {known}")
        self._table = {
            status: tuple((name, handlers[name]) for name in names)
            for status, names in routes.items()
        }
        self._default = self._table.get(DEFAULT_ROUTE, ())

    def route(self, status: str | None) -> tuple[tuple[str, T], ...]:
        """The (name, handler) pairs for `status`, in configured order."""
        if status is None:
            return self._default
        return self._table.get(status, self._default)


def unrouted_statuses(routes: Mapping[str, Sequence[str]]) -> list[str]:
    """Bandwidth's documented statuses no handler would see: no entry and no ``default``.

    A ``[routes]`` table replaces the built-in routes as a whole, ``default`` included, so
    naming only ``complete`` leaves every other status unrouted.
    """
    if routes.get(DEFAULT_ROUTE):
        return []
    return [str(status) for status in Status if not routes.get(status)]

"""Finding handler plugins by entry point, and building them from their configured options."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import msgspec

from consumer.errors import PluginError
from consumer.handler import Handler

ENTRY_POINT_GROUP = "recording_consumer.handlers"


def discover(references: Mapping[str, str] | None = None) -> dict[str, EntryPoint]:
    """Every handler by name: installed entry points plus ``module:attribute`` references.

    Two sources claiming one name is an error, so a plugin can never shadow another silently.
    """
    found: dict[str, EntryPoint] = {}
    configured = [
        EntryPoint(name, value, ENTRY_POINT_GROUP) for name, value in (references or {}).items()
    ]
    for ep in [*entry_points(group=ENTRY_POINT_GROUP), *configured]:
        if ep.name in found and found[ep.name].value != ep.value:
            raise PluginError(
                f"handler name {ep.name!r} is claimed by both {_origin(found[ep.name])} "
                f"and {_origin(ep)}"
            )
        found[ep.name] = ep
    return found


def build_handlers(
    names: Iterable[str],
    options: Mapping[str, Mapping[str, Any]],
    references: Mapping[str, str] | None = None,
) -> dict[str, Handler]:
    """Load and construct each named handler once, validating its options."""
    available = discover(references)
    handlers: dict[str, Handler] = {}
    for name in dict.fromkeys(names):
        if name not in available:
            known = ", ".join(sorted(available)) or "none"
            raise PluginError(f"unknown handler {name!r}; available handlers: {known}")
        try:
            factory = available[name].load()
        except (ImportError, AttributeError) as exc:
            raise PluginError(
                f"handler {name!r} ({available[name].value}) cannot be loaded: {exc}"
            ) from exc
        handlers[name] = _construct(name, factory, options.get(name, {}))
    return handlers


def _construct(name: str, factory: Any, raw_options: Mapping[str, Any]) -> Handler:
    options_type = getattr(factory, "Options", None)
    if options_type is None:
        if raw_options:
            raise PluginError(f"handler {name!r} takes no options, got: {', '.join(raw_options)}")
        handler = factory()
    else:
        try:
            options = msgspec.convert(raw_options, options_type, strict=False)
        except msgspec.ValidationError as exc:
            raise PluginError(f"handlers.{name}: {exc}") from None
        handler = factory(options)
    if not isinstance(handler, Handler):
        raise PluginError(f"handler {name!r} has no async handle(event, ctx) method")
    return handler


def _origin(ep: EntryPoint) -> str:
    dist = ep.dist
    return f"{dist.name} {dist.version} ({ep.value})" if dist else f"config plugins ({ep.value})"

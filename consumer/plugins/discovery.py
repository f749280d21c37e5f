"""Finding handler plugins by entry point, and building them from their configured options."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import msgspec

from consumer.errors import PluginError
from consumer.handler_api import Handler, options_keyed, options_type
from consumer.secret import EnvText, decode_secret, is_secret, masked
from consumer.settings.config import PluginSettings, validation_key

ENTRY_POINT_GROUP = "recording_consumer.handlers"


def discover(settings: PluginSettings) -> dict[str, EntryPoint]:
    """Every usable handler by name: allowed entry points and allowed ``module:attribute`` paths.

    Two sources claiming one name is an error, so a plugin can never shadow another silently.
    ``[plugins] allow``, when set, limits both: nothing outside it is ever imported.
    """
    installed = list(entry_points(group=ENTRY_POINT_GROUP))
    claims: dict[str, EntryPoint] = {}
    for ep in installed:
        if settings.allow is None or ep.name in settings.allow:
            _check_clash(ep, claims.get(ep.name))
            claims[ep.name] = ep
    for name, value in settings.paths.items():
        ep = EntryPoint(name, value, ENTRY_POINT_GROUP)
        # A path may not take an installed handler's name, even one the allow-list hides.
        _check_clash(ep, next((other for other in installed if other.name == name), None))
        if settings.allow is None or name in settings.allow:
            claims[name] = ep
    return claims


def _check_clash(ep: EntryPoint, rival: EntryPoint | None) -> None:
    if rival is not None and rival.value != ep.value:
        raise PluginError(
            f"handler name {ep.name!r} is claimed by both {_origin(rival)} and {_origin(ep)}"
        )


def _unavailable(name: str, available: Mapping[str, EntryPoint], settings: PluginSettings) -> str:
    """Why `name` is not a usable handler, with the names that are."""
    known = ", ".join(sorted(available)) or "none"
    blocked = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if blocked:
        return (
            f"handler {name!r} is installed ({_origin(blocked[0])}) but not in plugins.allow "
            f"{settings.allow}; available handlers: {known}"
        )
    if name in settings.paths:
        return (
            f"handler {name!r} is in plugins.paths ({settings.paths[name]}) but not in "
            f"plugins.allow {settings.allow}; available handlers: {known}"
        )
    return f"unknown handler {name!r}; available handlers: {known}"


def build_handlers(
    names: Iterable[str], options: Mapping[str, Mapping[str, Any]], settings: PluginSettings
) -> dict[str, Handler]:
    """Load and construct each named handler once, validating its options.

    `options` may also hold options for available handlers no route uses (they are not built),
    but not for names that are no handler at all.
    """
    available = discover(settings)
    for name in options:
        # Options for a handler that does not exist are a typo (or a missing package).
        if name not in available:
            raise PluginError(f"handlers.{name}: {_unavailable(name, available, settings)}")
    handlers: dict[str, Handler] = {}
    for name in dict.fromkeys(names):
        if name not in available:
            raise PluginError(_unavailable(name, available, settings))
        try:
            factory = available[name].load()
        except (ImportError, AttributeError) as exc:
            raise PluginError(
                f"handler {name!r} ({available[name].value}) cannot be loaded: {exc}"
            ) from exc
        # Checked before the call: a path to any callable (`os:getpid`) must not run it.
        if not (callable(factory) and callable(getattr(factory, "handle", None))):
            raise PluginError(
                f"handler {name!r} ({available[name].value}) is not a handler: "
                "expected a class with an async handle(event, ctx) method"
            )
        handlers[name] = _construct(name, factory, options.get(name, {}))
    return handlers


def _construct(name: str, factory: Any, raw_options: Mapping[str, Any]) -> Handler:
    options_class = _options_of(name, factory)
    if options_class is None:
        if raw_options:
            raise PluginError(f"handler {name!r} takes no options, got: {', '.join(raw_options)}")
        with options_keyed(name):
            handler = factory()
    else:
        try:
            options = msgspec.convert(
                from_environment(raw_options, options_class),
                options_class,
                strict=True,
                dec_hook=decode_secret,
            )
        except msgspec.ValidationError as exc:
            key, reason = validation_key(exc)
            where = ".".join(part for part in ("handlers", name, key) if part)
            raise PluginError(f"{where}: {reason}") from None
        with options_keyed(name):
            handler = factory(options)
    if not isinstance(handler, Handler):
        raise PluginError(f"handler {name!r} has no async handle(event, ctx) method")
    return handler


def from_environment(raw: Mapping[str, Any], options_type: type) -> dict[str, Any]:
    """`raw` options with each value an environment variable gave (`EnvText`) made what its
    option's type asks: the text itself for a `Secret`, else the TOML value it spells."""
    info = msgspec.inspect.type_info(options_type)
    return {key: _resolved(value, _inner(info, key)) for key, value in raw.items()}


def _resolved(value: Any, info: msgspec.inspect.Type | None) -> Any:
    if isinstance(value, EnvText):
        return str(value) if info is not None and is_secret(info) else value.parsed()
    if isinstance(value, dict):
        return {key: _resolved(item, _inner(info, key)) for key, item in value.items()}
    return value


def _inner(info: msgspec.inspect.Type | None, key: str) -> msgspec.inspect.Type | None:
    """The type of `key`'s value inside a value of type `info` (a Struct, or a dict)."""
    if isinstance(info, msgspec.inspect.UnionType):
        tables = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
        info = tables[0] if len(tables) == 1 else None
    if isinstance(info, msgspec.inspect.StructType | msgspec.inspect.DataclassType):
        return next((f.type for f in info.fields if f.encode_name == key), None)
    if isinstance(info, msgspec.inspect.DictType):
        return info.value_type
    return None


def _options_of(name: str, factory: Any) -> type[msgspec.Struct] | None:
    try:
        return options_type(factory)
    except TypeError as exc:
        raise PluginError(f"handler {name!r}: {exc}") from None


def masked_options(
    options: Mapping[str, Mapping[str, Any]], settings: PluginSettings
) -> dict[str, dict[str, Any]]:
    """Handler options as written, each `Secret` option's value shown as ``***``.

    A handler that cannot be found or loaded has all its values masked: nothing says which
    of them are secret.
    """
    available = discover(settings)
    shown: dict[str, dict[str, Any]] = {}
    for name, raw in options.items():
        try:
            options_class = options_type(available[name].load()) if raw else None
        except Exception:  # unknown or broken: nothing says which of its options are secret
            options_class = None
        if options_class is not None:
            raw = from_environment(raw, options_class)
        shown[name] = masked(options_class, raw) if raw else {}
    return shown


def _origin(ep: EntryPoint) -> str:
    dist = ep.dist
    return f"{dist.name} {dist.version} ({ep.value})" if dist else f"config plugins ({ep.value})"


def available_handlers(
    settings: PluginSettings,
) -> list[tuple[str, str, list[tuple[str, str, str]]]]:
    """(name, origin, [(option, type, default)]) for every usable handler, by name."""
    described: list[tuple[str, str, list[tuple[str, str, str]]]] = []
    for name, ep in sorted(discover(settings).items()):
        try:
            options_class = options_type(ep.load())
        except (ImportError, AttributeError, TypeError) as exc:
            described.append((name, f"{_origin(ep)}: cannot be loaded: {exc}", []))
            continue
        options = [
            (f.name, _type_name(f.type), "(required)" if f.required else repr(_default(f)))
            for f in (msgspec.structs.fields(options_class) if options_class else ())
        ]
        described.append((name, _origin(ep), options))
    return described


def _default(f: msgspec.structs.FieldInfo) -> Any:
    return f.default_factory() if f.default is msgspec.NODEFAULT else f.default


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and not hasattr(annotation, "__origin__"):
        return annotation.__name__
    return str(annotation).replace("typing.", "")

"""Secret values: handler options and credentials that never show up as written.

A handler marks an option secret by typing it `Secret` (or ``Secret | None``) in its
``Options`` Struct: the worker converts the settings' string into one, ``check-config`` prints
``***`` in its place, and its repr, str and JSON log form hide it. ``reveal()`` gives the value
to the one place that needs it. Set from the environment, a `Secret` option is taken verbatim
(see `EnvText`), and its value is blanked out of failure messages (`consumer.redaction`).
"""

from __future__ import annotations

import hmac
import os
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import structlog

from consumer.errors import ConfigError
from consumer.redaction import MASK as MASK
from consumer.redaction import remember


class Secret:
    """A secret string; everything but `reveal()` shows ``***``."""

    __slots__ = ("__weakref__", "_value")

    def __init__(self, value: str) -> None:
        self._value = value
        remember(self)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)


class EnvText(str):
    """A setting as an environment variable spelt it, before it is read as TOML.

    Settings are read as TOML values when they parse as one (``12345`` becomes a number,
    ``"quoted"`` loses its quotes), but a secret must be taken exactly as given. Handler options
    are only typed when the handler is built, so they stay `EnvText` until then.
    """

    __slots__ = ()

    def parsed(self) -> Any:
        """The TOML value this text spells, or the text itself if it spells none."""
        try:
            return tomllib.loads(f"v = {self}")["v"]
        except tomllib.TOMLDecodeError:
            return str(self)


def decode_secret(type_: type, value: Any) -> Any:
    """msgspec ``dec_hook``: a settings string becomes a `Secret` where an option asks for one."""
    if type_ is Secret and isinstance(value, str):
        return Secret(value)
    # A TypeError becomes msgspec's ValidationError, naming the option, as without this hook.
    expected = "str" if type_ is Secret else getattr(type_, "__name__", str(type_))
    raise TypeError(f"Expected `{expected}`, got `{type(value).__name__}`")


def encode_secret(obj: Any) -> Any:
    """msgspec ``enc_hook``: a `Secret` is written as the mask."""
    if isinstance(obj, Secret):
        return MASK
    if isinstance(obj, EnvText):
        return str(obj)
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


def masked(options_type: type | None, raw: Mapping[str, Any]) -> dict[str, Any]:
    """`raw` options with the value of every option typed with `Secret` replaced by ``***``.

    Without an `options_type` (or one that is not a Struct) nothing says which options are
    secret, so every value is masked.
    """
    info = msgspec.inspect.type_info(options_type) if options_type is not None else None
    if not isinstance(info, msgspec.inspect.StructType | msgspec.inspect.DataclassType):
        return dict.fromkeys(raw, MASK)
    secret = {f.encode_name for f in info.fields if _holds_secret(f.type, set())}
    return {key: MASK if key in secret else value for key, value in raw.items()}


def is_secret(info: msgspec.inspect.Type) -> bool:
    """Whether `info` is `Secret` or a union with it (``Secret | None``): a single string."""
    members = info.types if isinstance(info, msgspec.inspect.UnionType) else (info,)
    return any(
        isinstance(t, msgspec.inspect.CustomType) and issubclass(t.cls, Secret) for t in members
    )


def _holds_secret(info: msgspec.inspect.Type, seen: set[type]) -> bool:
    if isinstance(info, msgspec.inspect.CustomType):
        return issubclass(info.cls, Secret)
    if isinstance(info, msgspec.inspect.StructType | msgspec.inspect.DataclassType):
        if info.cls in seen:  # a recursive type: already being looked at
            return False
        seen.add(info.cls)
        return any(_holds_secret(f.type, seen) for f in info.fields)
    inner = [
        getattr(info, name)
        for name in ("types", "item_type", "item_types", "key_type", "value_type")
        if hasattr(info, name)
    ]
    flat = [t for part in inner for t in (part if isinstance(part, tuple) else (part,))]
    return any(_holds_secret(t, seen) for t in flat)


def read_secret(
    env_name: str,
    file: str | None,
    *,
    key: str,
    environ: Mapping[str, str] | None = None,
) -> Secret:
    """The secret in `file` when given, else in `$env_name`; ConfigError names the missing source.

    `key` is the settings key to blame (``handlers.download.client_id_env``). A file that group
    or others may read is used, with a warning (see `warn_if_shared`).
    """
    if file is not None:
        try:
            value = Path(file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read {file}: {exc.strerror}", key) from None
        if not value:
            raise ConfigError(f"{file} is empty", key)
        warn_if_shared(file, key=key)
        return Secret(value)
    value = (os.environ if environ is None else environ).get(env_name, "").strip()
    if not value:
        raise ConfigError(f"environment variable {env_name} is not set", key)
    return Secret(value)


def warn_if_shared(file: str, *, key: str) -> None:
    """Log a warning when `file` is readable by its group or by others.

    A warning, not a refusal: Kubernetes mounts secrets 0644 and Docker 0444 unless told
    otherwise, and the file is still the operator's to protect.
    """
    try:
        mode = os.stat(file).st_mode
    except OSError:
        return
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        structlog.get_logger("consumer.secret").warning(
            "secret file is readable by group or others",
            file=file,
            key=key,
            mode=oct(stat.S_IMODE(mode)),
            fix=f"chmod 600 {file} (Kubernetes: defaultMode 0400; compose: secrets mode 0400)",
        )

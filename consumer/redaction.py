"""Secret values blanked out of error text before it reaches logs or dead-letter headers.

Every `consumer.Secret` registers here while it lives: settings and handler options typed
`Secret`, the Bandwidth credentials, the OAuth tokens the download handler obtains. A library
may put a value it was given into its exception (httpx: ``Illegal header value b'Bearer ...'``),
so the engine turns a failure into text through `error_message` (the text as raised) or
`error_line` (class and reason, the one exception-to-line function) only, and both blank them.
"""

from __future__ import annotations

import weakref
from typing import Protocol

MASK = "***"


class _Revealing(Protocol):
    def reveal(self) -> str: ...


# By identity: a set would take two equal secrets for one and forget both when one goes.
_LIVE: weakref.WeakValueDictionary[int, _Revealing] = weakref.WeakValueDictionary()


def remember(secret: _Revealing) -> None:
    """Blank `secret`'s value from error text for as long as `secret` lives."""
    _LIVE[id(secret)] = secret


def redact(text: str) -> str:
    """`text` with each live secret's value, as written or as Python's str/bytes repr escapes
    it, replaced by ``***``; longest first, so a value containing another goes whole."""
    forms: set[str] = set()
    for secret in list(_LIVE.values()):
        value = secret.reveal()
        if value:
            forms |= {value, repr(value)[1:-1], repr(value.encode())[2:-1]}
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, MASK)
    return text


def error_message(error: BaseException) -> str:
    """The text of `error` as logs and dead-letter headers show it: secrets blanked."""
    return redact(str(error))


def error_reason(error: BaseException) -> str:
    """What `error` says went wrong, secrets blanked; empty if it says nothing. An error whose
    text repeats its class name (aiokafka's read ``[Error 58] SaslAuthenticationFailed: why``)
    gives its first argument, the reason alone."""
    text = error_message(error)
    name = type(error).__name__
    if text == name or f"{name}: " in text:
        text = redact(str(error.args[0])) if error.args else ""
    return text


def error_line(error: BaseException) -> str:
    """`error` in one log field: ``Class: reason``, or the class alone when it gives none."""
    reason = error_reason(error)
    return f"{type(error).__name__}: {reason}" if reason else type(error).__name__

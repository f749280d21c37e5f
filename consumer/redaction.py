"""Secret values blanked out of error text before it reaches logs or dead-letter headers.

Every `consumer.Secret` registers here while it lives: settings and handler options typed
`Secret`, the Bandwidth credentials, the OAuth tokens the download handler obtains. A library
may put a value it was given into its exception (httpx: ``Illegal header value b'Bearer ...'``),
so the engine turns a failure into text through `error_message` only, and that blanks them.
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

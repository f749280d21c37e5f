"""The ``publish`` handler: republish each event to a topic named after it (its status)."""

from __future__ import annotations

import os
import re
import socket
import string
from typing import TYPE_CHECKING, ClassVar, Final, Literal

import msgspec

from consumer.errors import PluginError
from consumer.events import encode_event

if TYPE_CHECKING:
    from consumer.events import RecordingEvent
    from consumer.handler_api import Context

PLACEHOLDERS: Final = frozenset({"status", "eventType", "accountId"})
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
VALUE_MAX: Final = 64
"""Characters kept of each placeholder's value, so odd values cannot make an overlong name."""


class PublishOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Where to republish, what to send, and how to sign it."""

    topic: str = "recordings.{status}"
    """Template with ``{status}``, ``{eventType}`` and ``{accountId}``; values are sanitised."""
    payload: Literal["original", "normalised"] = "original"
    """original: the bytes as consumed; normalised: the decoded event re-encoded as JSON."""
    header: str = "published-by"
    """Header naming the publishing worker; an existing header of that name is replaced."""
    published_by: str | None = None
    """That header's value; ``<hostname>:<pid>`` when not set."""


class PublishHandler:
    """Sends each event on, keeping the Kafka key and the original headers."""

    Options: ClassVar[type[PublishOptions]] = PublishOptions

    def __init__(self, options: PublishOptions | None = None) -> None:
        self._options = options = options or PublishOptions()
        self._fields = _template_fields(options.topic)
        self._signature = (options.published_by or f"{socket.gethostname()}:{os.getpid()}").encode()

    async def handle(self, event: RecordingEvent, ctx: Context) -> None:
        topic = self.topic_for(event)
        value = ctx.value if self._options.payload == "original" else encode_event(event)
        name = self._options.header
        headers = [(k, v) for k, v in ctx.record.headers if k != name]
        headers.append((name, self._signature))
        await ctx.publish(topic, value, key=ctx.record.key, headers=headers)
        ctx.log.info("event republished", to_topic=topic)

    def topic_for(self, event: RecordingEvent) -> str:
        """The template filled in with `event`'s sanitised values; always a valid topic name.

        Checked once at construction with the longest values `_sanitise` can return.
        """
        values = {
            "status": event.status,
            "eventType": event.event_type,
            "accountId": event.account_id,
        }
        return self._options.topic.format_map(
            {name: _sanitise(values[name]) for name in self._fields}
        )


def _sanitise(value: str | None) -> str:
    # Dots are replaced too, so a value can never turn the name into "." or "..".
    return _UNSAFE.sub("_", value[:VALUE_MAX]) if value else "none"


def _template_fields(template: str) -> frozenset[str]:
    """The placeholders `template` uses; PluginError unless it always makes a valid topic."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise PluginError(f"handlers.publish.topic: {exc}") from None
    fields = frozenset(name for _, name, _, _ in parsed if name is not None)
    formatted = any(spec or conversion for _, name, spec, conversion in parsed if name)
    unknown = fields - PLACEHOLDERS
    if unknown or formatted or "" in fields:
        raise PluginError(
            "handlers.publish.topic: only plain "
            + ", ".join(f"{{{name}}}" for name in sorted(PLACEHOLDERS))
            + " may be used"
        )
    longest = template.format_map(dict.fromkeys(fields, "x" * VALUE_MAX))
    if not _TOPIC.fullmatch(longest) or longest in (".", ".."):
        raise PluginError(f"handlers.publish.topic: {template!r} does not make a valid topic name")
    return fields

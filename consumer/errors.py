"""The exceptions recording-consumer raises, and the ones handlers raise to steer delivery.

    ConsumerError                  base of everything raised on purpose
    ├── ConfigError                bad settings; the worker refuses to start
    │   └── OptionError            a handler's option is wrong; keyed by the framework
    ├── PluginError                a handler cannot be found, loaded or configured
    ├── KafkaConnectError          Kafka cannot be reached (within kafka.startup_timeout),
    │                              or refuses our credentials
    ├── DecodeError                a Kafka message is not a usable event
    ├── UnreadableBatch            fetched bytes the Kafka client cannot read; the worker stops
    └── HandlerError               raised by handlers to choose what happens next
        ├── RetryLater             try again, optionally after a given delay
        ├── PermanentFailure       do not retry; dead-letter the message now
        └── Skipped                passed over on purpose; commit, do not retry

Any other exception from a handler counts as a transient failure and is retried per policy.
"""

from __future__ import annotations


class ConsumerError(Exception):
    """Base class, so callers can catch everything the project raises deliberately."""


class ConfigError(ConsumerError):
    """Settings are wrong; raised at start-up so a bad deploy fails fast instead of mid-stream.

    `key` is the dotted settings key at fault (``kafka.topic``), or None for whole-file problems.
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class OptionError(ConfigError):
    """A handler's option is wrong, found by the handler itself (in ``__init__`` or ``start``).

    A handler does not know the name it is registered under (an entry point or a
    ``[plugins] paths`` alias), so it names the option alone and the framework reports
    ``handlers.<registered name>.<option>``.
    """

    def __init__(self, option: str, reason: str) -> None:
        super().__init__(f"{option}: {reason}", option)
        self.option = option
        self.reason = reason


class PluginError(ConsumerError):
    """A handler plugin is unknown, ambiguous, broken or misconfigured; found before consuming."""


class KafkaConnectError(ConsumerError):
    """A client could not connect; the message is one line naming the cause, never a secret.

    aiokafka only says it could not bootstrap. `retryable` is False for authentication and TLS
    failures, which trying again cannot fix, and True for refusals and timeouts. `cause` is
    the line's reason alone, for messages that name the address their own way.
    """

    def __init__(self, message: str, *, retryable: bool, cause: str = "") -> None:
        super().__init__(message)
        self.retryable = retryable
        self.cause = cause or message


class DecodeError(ConsumerError):
    """A message cannot become an event; it carries why and where, for logs and dead letters.

    `path` is the JSON path of the offending value (``$.channels``), or None when the message
    as a whole is unusable (not JSON, not an object).
    """

    def __init__(self, reason: str, path: str | None = None) -> None:
        super().__init__(f"{reason} (at {path})" if path else reason)
        self.reason = reason
        self.path = path


class UnreadableBatch(ConsumerError):
    """A record batch the client cannot read (corrupt, or in a codec it cannot decode).

    Skipping it would lose its messages silently and retrying cannot help, so the worker stops
    without committing past `offset` (the batch's first) and says where and why.
    """

    def __init__(self, topic: str, partition: int, offset: int | None, cause: str) -> None:
        at = f"offset {offset}" if offset is not None else "an unknown offset"
        super().__init__(f"cannot read {topic}/{partition} at {at}: {cause}")
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.cause = cause


class HandlerError(ConsumerError):
    """Base for the outcomes a handler can ask for explicitly."""


class RetryLater(HandlerError):
    """The handler wants another attempt, after `delay` seconds if it knows (Retry-After)."""

    def __init__(self, message: str = "", *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentFailure(HandlerError):
    """Retrying cannot help (a 404, a rejected URL); the message goes to the dead-letter topic."""


class Skipped(HandlerError):
    """The handler passes over this event on purpose (a recording too short to keep).

    Returning would count the event as handled and raising anything else would retry it. A
    skip is neither: the handler is done with the message (no retry, no dead letter, the offset
    is committed) and `reason` goes into the message's log line. A message whose handlers all
    skipped it has the outcome ``skipped``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

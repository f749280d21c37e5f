"""recording-consumer: Bandwidth recording events from Kafka, routed to handler plugins.

The public API is what this module exports (``__all__``): everything a handler plugin and its
tests use, ``from consumer import ...``. It follows semantic versioning (see
docs/stability.md); every other module is private and may change in any release.

The testing kit's names (`make_event`, `run_handler`, `kafka_round_trip`, ...) load on first
use, so a worker does not import the kit.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from consumer.cloudevents import CloudEvent
from consumer.errors import (
    ConfigError,
    ConsumerError,
    DecodeError,
    HandlerError,
    OptionError,
    PermanentFailure,
    PluginError,
    RetryLater,
    Skipped,
    UnreadableBatch,
)
from consumer.events import (
    ConferenceRecordingAvailable,
    Direction,
    FileFormat,
    RecordingAvailable,
    RecordingEvent,
    Status,
)
from consumer.handler_api import (
    BaseHandler,
    Context,
    Handler,
    ProducerPublish,
    Publish,
    Record,
    running,
)
from consumer.http import retry_after
from consumer.outcomes import OUTCOMES, Outcome
from consumer.secret import Secret
from consumer.settings.config import KafkaSettings, RetryPolicy

if TYPE_CHECKING:
    from consumer.devkit.testing import (
        DeadLetter,
        HandlerRun,
        Published,
        RoundTrip,
        RoundTripResult,
        kafka_round_trip,
        make_conference_event,
        make_event,
        run_handler,
    )

try:
    __version__ = version("recording-consumer")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

_KIT = frozenset(
    {
        "DeadLetter",
        "HandlerRun",
        "Published",
        "RoundTrip",
        "RoundTripResult",
        "kafka_round_trip",
        "make_conference_event",
        "make_event",
        "run_handler",
    }
)


def __getattr__(name: str) -> Any:
    if name in _KIT:
        return getattr(import_module("consumer.devkit.testing"), name)
    raise AttributeError(f"module 'consumer' has no attribute {name!r}")


__all__ = [
    "OUTCOMES",
    "BaseHandler",
    "CloudEvent",
    "ConferenceRecordingAvailable",
    "ConfigError",
    "ConsumerError",
    "Context",
    "DeadLetter",
    "DecodeError",
    "Direction",
    "FileFormat",
    "Handler",
    "HandlerError",
    "HandlerRun",
    "KafkaSettings",
    "OptionError",
    "Outcome",
    "PermanentFailure",
    "PluginError",
    "ProducerPublish",
    "Publish",
    "Published",
    "Record",
    "RecordingAvailable",
    "RecordingEvent",
    "RetryLater",
    "RetryPolicy",
    "RoundTrip",
    "RoundTripResult",
    "Secret",
    "Skipped",
    "Status",
    "UnreadableBatch",
    "__version__",
    "kafka_round_trip",
    "make_conference_event",
    "make_event",
    "retry_after",
    "run_handler",
    "running",
]

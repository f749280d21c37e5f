"""recording-consumer: Bandwidth recording events from Kafka, routed to handler plugins.

What plugin authors use: the names exported here (also importable from `consumer.handler`,
`consumer.events`, `consumer.errors` and `consumer.secret`), and `consumer.testing` with its
pytest fixtures. Everything else is private and may change.
"""

from consumer.cloudevents import CloudEvent
from consumer.errors import (
    ConfigError,
    ConsumerError,
    DecodeError,
    HandlerError,
    PermanentFailure,
    PluginError,
    RetryLater,
    UnreadableBatch,
)
from consumer.events import ConferenceRecordingAvailable, RecordingAvailable, RecordingEvent
from consumer.handler import Context, Handler, Publish, Record
from consumer.secret import Secret

__all__ = [
    "CloudEvent",
    "ConferenceRecordingAvailable",
    "ConfigError",
    "ConsumerError",
    "Context",
    "DecodeError",
    "Handler",
    "HandlerError",
    "PermanentFailure",
    "PluginError",
    "Publish",
    "Record",
    "RecordingAvailable",
    "RecordingEvent",
    "RetryLater",
    "Secret",
    "UnreadableBatch",
]

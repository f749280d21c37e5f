"""recording-consumer: Bandwidth recording events from Kafka, routed to handler plugins.

The public surface for plugin authors is what this module exports; everything else is private.
"""

from consumer.errors import (
    ConsumerError,
    DecodeError,
    HandlerError,
    PermanentFailure,
    RetryLater,
)
from consumer.handler import Context, Handler, Record

__all__ = [
    "ConsumerError",
    "Context",
    "DecodeError",
    "Handler",
    "HandlerError",
    "PermanentFailure",
    "Record",
    "RetryLater",
]

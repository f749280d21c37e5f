"""The one exception-to-line function, `consumer.redaction.error_line`: pure units, no broker."""

from __future__ import annotations

import gzip

from aiokafka.errors import (
    CorruptRecordException,
    KafkaConnectionError,
    KafkaTimeoutError,
    SaslAuthenticationFailed,
)

from consumer import Secret
from consumer.redaction import error_line, error_reason


def test_an_error_is_its_class_and_its_reason() -> None:
    """Python's own errors as they print, after their class; an error with nothing to say is
    its class alone."""
    assert error_line(RuntimeError("media server said no")) == "RuntimeError: media server said no"
    assert error_line(KeyError("eventType")) == "KeyError: 'eventType'"
    refused = ConnectionRefusedError(111, "Connection refused")
    assert error_line(refused) == "ConnectionRefusedError: [Errno 111] Connection refused"
    assert error_line(gzip.BadGzipFile("Not a gzipped file")) == "BadGzipFile: Not a gzipped file"
    assert error_line(TimeoutError()) == "TimeoutError"


def test_aiokafkas_errors_do_not_repeat_their_class_or_error_code() -> None:
    """aiokafka's errors print as ``[Error 2] CorruptRecordException: why``: the line says the
    class once, and the reason alone is what follows it."""
    crc = CorruptRecordException("Invalid CRC - TopicPartition(topic='t', partition=0)")
    assert (
        error_line(crc)
        == "CorruptRecordException: Invalid CRC - TopicPartition(topic='t', partition=0)"
    )
    sasl = SaslAuthenticationFailed("Authentication failed: Invalid username or password")
    assert error_reason(sasl) == "Authentication failed: Invalid username or password"
    bootstrap = KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 9, 2)]")
    assert (
        error_line(bootstrap)
        == "KafkaConnectionError: Unable to bootstrap from [('127.0.0.1', 9, 2)]"
    )
    assert error_line(KafkaTimeoutError()) == "KafkaTimeoutError"


def test_a_live_secret_is_blanked_from_the_line() -> None:
    """The line goes to logs: a secret an error quotes is blanked there as everywhere else."""
    secret = Secret("hunter2-token")
    assert error_line(ValueError(f"bad header Bearer {secret.reveal()}")) == (
        "ValueError: bad header Bearer ***"
    )
    assert error_reason(SaslAuthenticationFailed(f"token {secret.reveal()} refused")) == (
        "token *** refused"
    )

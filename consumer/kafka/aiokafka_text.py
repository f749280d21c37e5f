"""What aiokafka says only in words: the templates of its log records, a connection it saw close.

aiokafka has no exception type, attribute or logger of its own for these, so this is the one
module that reads its text. tests/unit/test_aiokafka_text.py fails if the words change (written
against aiokafka 0.14.0, the version requirements.lock pins).
"""

from __future__ import annotations

import logging

from aiokafka.errors import KafkaConnectionError

CLIENT_LOGGER = "aiokafka"
"""The logger aiokafka's client writes its connection failures to."""
BOOTSTRAP_FAILURES = frozenset(
    {
        'Unable connect to "%s:%s": %s',
        'Unable to request metadata from "%s:%s": %s',
        "Unable connect to node with id %s: %s",
        "Unable to request metadata from node with id %s: %r",
    }
)
"""A client's per-address failures while it starts (the error it then raises says it once)."""
TOPIC_NOT_FOUND = "Topic %s not found in cluster metadata"
"""Its argument: the topic (being auto-created, at first)."""
COORDINATOR_REQUEST_FAILED = "Group Coordinator Request failed: %s"
"""Its argument: the error (GroupCoordinatorNotAvailableError while a fresh broker makes one)."""
COORDINATOR_MARKED_DEAD = "Marking the coordinator dead (node %s)for group %s."


def is_bootstrap_failure(record: logging.LogRecord) -> bool:
    """Whether `record` is a client's failure to reach one address while it starts."""
    return record.msg in BOOTSTRAP_FAILURES


def closed_by_peer(exc: BaseException) -> bool:
    """Whether `exc` is the connection closing under a request (the broker hung up): aiokafka
    raises the KafkaConnectionError it raises for every connection failure, saying so in words."""
    return isinstance(exc, KafkaConnectionError) and "closed" in str(exc)

"""FastStream's Kafka subscriber over the benchmark's topic, run as its own process.

Started by bench/throughput.py:  python bench/faststream_app.py SERVER TOPIC GROUP none|default

The callback takes the event as a pydantic model (FastStream decodes and validates the body)
and does nothing else but count; it notes the time of its first and last event as
bench/noop_handler.py does.
``none`` runs the broker without a logger, ``default`` with FastStream's own logging (two lines
per message on stdout).

Commits: FastStream's default ``AckPolicy.ACK_FIRST``, where aiokafka auto-commits the consumed
positions in the background, every second here (``auto_commit_interval_ms=1000``, the worker's
``commit_interval``; FastStream's default is 5 s). A message's offset may so be committed while
its callback still runs. The at-least-once alternative, ``AckPolicy.ACK``, awaits a commit after
every message: on the 2-core benchmark machine that ran at about 130 events/s, a figure of the
broker's commit latency, not of FastStream.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import datetime, timedelta

from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker
from noop_handler import EVENTS, note
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class Recording(BaseModel):
    """Bandwidth's recordingAvailable callback, field for field."""

    model_config = ConfigDict(alias_generator=to_camel, frozen=True)

    event_type: str
    event_time: datetime | None = None
    account_id: str | None = None
    application_id: str | None = None
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None
    direction: str | None = None
    call_id: str | None = None
    call_url: str | None = None
    parent_call_id: str | None = None
    recording_id: str | None = None
    media_url: str | None = None
    enqueued_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    duration: timedelta | None = None
    file_format: str | None = None
    channels: int | None = None
    tag: str | None = None
    status: str | None = None
    transfer_caller_id: str | None = None
    transfer_to: str | None = None


def app(server: str, topic: str, group: str, logging: str) -> FastStream:
    broker = KafkaBroker(server, logger=None) if logging == "none" else KafkaBroker(server)
    seen = 0
    last = int(os.environ[EVENTS])

    @broker.subscriber(
        topic,
        group_id=group,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.ACK_FIRST,
        auto_commit_interval_ms=1000,
    )
    async def handle(body: Recording) -> None:
        nonlocal seen
        seen += 1
        if seen == 1:
            note("first")
        if seen == last:
            note("last")

    return FastStream(broker)


if __name__ == "__main__":
    asyncio.run(app(*sys.argv[1:5]).run())

"""The bridge a team would write by hand: FastAPI, a pydantic model, ``send_and_wait`` per request.

Started by bench/ingress.py:  python bench/fastapi_bridge.py PORT SERVER TOPIC

Served by uvicorn (httptools, no access log). The producer is the ingress's (``acks=all``,
idempotent, the project's client options), so the comparison is of everything but Kafka.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from _common import connect
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class Callback(BaseModel):
    """Bandwidth's callback as such a bridge would model it: the common fields, any others kept."""

    model_config = ConfigDict(alias_generator=to_camel, extra="allow")

    event_type: str
    event_time: str | None = None
    account_id: str | None = None
    call_id: str | None = None
    recording_id: str | None = None
    conference_id: str | None = None
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None
    media_url: str | None = None
    status: str | None = None
    tag: str | None = None


def app(server: str, topic: str) -> FastAPI:
    producer: AIOKafkaProducer

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        nonlocal producer
        producer = AIOKafkaProducer(**connect(server), acks="all", enable_idempotence=True)
        await producer.start()
        yield
        await producer.stop()

    bridge = FastAPI(lifespan=lifespan)

    @bridge.post("/callbacks")
    async def callback(event: Callback) -> dict[str, str]:
        key = event.recording_id or event.call_id or event.conference_id
        value = event.model_dump_json(by_alias=True).encode()
        await producer.send_and_wait(topic, value, key=key.encode() if key else None)
        return {"status": "stored"}

    return bridge


if __name__ == "__main__":
    port, server, topic = sys.argv[1:4]
    uvicorn.run(
        app(server, topic),
        host="127.0.0.1",
        port=int(port),
        http="httptools",
        log_level="warning",
        access_log=False,
    )

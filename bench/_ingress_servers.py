"""The servers bench/ingress.py measures, each run in a process of its own (``--serve NAME``)."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any

from _common import connect

AUTH = ("bench", "bench-password")
Serve = Callable[[int, argparse.Namespace], Coroutine[Any, Any, None]]


async def _serve_aiohttp(port: int, args: argparse.Namespace) -> None:
    from aiohttp import web

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        await request.read()
        return web.Response(status=200)

    server = web.Server(handle, access_log=None)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(server, "127.0.0.1", port, backlog=1024)
    async with listener:
        await listener.serve_forever()


async def _serve_uvicorn(port: int, args: argparse.Namespace) -> None:
    import uvicorn

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="off",
        backlog=1024,
    )
    await uvicorn.Server(config).serve()


async def _serve_floor(port: int, args: argparse.Namespace) -> None:
    from aiohttp import web
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(**connect(args.bootstrap), acks="all", enable_idempotence=True)
    await producer.start()

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        await (await producer.send(args.topic, await request.read()))
        return web.Response(status=200)

    server = web.Server(handle, access_log=None)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(server, "127.0.0.1", port, backlog=1024)
    async with listener:
        await listener.serve_forever()


def run_ingress(port: int, args: argparse.Namespace) -> None:
    from consumer.ingress.command import ingest
    from consumer.kafka.security import checked
    from consumer.settings.config import load_settings

    environ = {
        "KAFKA_BOOTSTRAP_SERVERS": args.bootstrap,
        "RECORDING_CONSUMER__KAFKA__TOPIC": args.topic,
        "RECORDING_CONSUMER__INGRESS__LISTEN": f"127.0.0.1:{port}",
        "RECORDING_CONSUMER__INGRESS__USERNAME": AUTH[0],
        "RECORDING_CONSUMER__INGRESS__PASSWORD": AUTH[1],
        "RECORDING_CONSUMER__INGRESS__SPOOL_DIR": args.spool,
        "RECORDING_CONSUMER__LOGGING__LEVEL": "warning",
        "RECORDING_CONSUMER__LOGGING__FORMAT": "json",
    }
    environ = {**os.environ, **environ}
    ingest(checked(load_settings(environ=environ), environ))


SERVERS: dict[str, Serve] = {
    "aiohttp": _serve_aiohttp,
    "uvicorn": _serve_uvicorn,
    "floor": _serve_floor,
}

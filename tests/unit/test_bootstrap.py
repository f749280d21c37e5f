"""``kafka.bootstrap_servers`` read by the one parser, as the Kafka client reads it: pure units
and a loopback listener, no broker."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.conn import collect_hosts

from consumer.bootstrap import bootstrap_addresses
from consumer.kafka.startup import port_refusal

AS_THE_CLIENT_READS = [
    "127.0.0.1:9092",
    "b-1.example.com:9096, b-2.example.com:9096",
    "kafka",
    "[::1]:19092",
    "[fe80::1]",
    "::1",
    " broker:9093 ",
]


@pytest.mark.parametrize("servers", AS_THE_CLIENT_READS)
def test_each_address_is_the_one_the_kafka_client_connects_to(servers: str) -> None:
    """Ports, a host without one (9092), IPv6 in brackets or bare, spaces: the same (host,
    port) pairs, in the same order, as aiokafka's own reading of the setting."""
    expected = [(host, port) for host, port, _ in collect_hosts(servers, randomize=False)]
    assert bootstrap_addresses(servers) == expected


NOT_HOST_PORT = [
    "kafka:abc",
    "kafka:",
    "[::1]x",
    "kafka:70000",
    ":9092",
    "[]:9092",
    "SASL_SSL://b-1:9096",
]


@pytest.mark.parametrize("servers", NOT_HOST_PORT)
def test_an_entry_that_is_not_host_port_is_named(servers: str) -> None:
    """A port that is no port, or a missing host, is refused with the entry quoted, before
    anything connects."""
    with pytest.raises(ValueError, match=r"^not host:port: "):
        bootstrap_addresses(f"ok:9092,{servers}")


async def test_the_start_up_probe_reaches_what_the_parser_reads() -> None:
    """The probe connects to a listening address after a refused one, and says what is wrong
    with a malformed entry rather than trying it."""
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        assert await port_refusal(f"127.0.0.1:1, 127.0.0.1:{port}") is None
        assert await port_refusal("127.0.0.1:1") is not None
        assert await port_refusal("kafka:abc") == "not host:port: 'kafka:abc'"
        assert await port_refusal(" , ") == "no bootstrap servers"
    finally:
        server.close()
        await server.wait_closed()

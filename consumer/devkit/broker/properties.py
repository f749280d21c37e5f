"""The files that configure a dev broker: its server.properties and its log4j2 configuration."""

from __future__ import annotations

from pathlib import Path

LOG4J2 = """status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = out
# Keeps the "Kafka Server started" line, so the log shows when and whether the broker came up.
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = info
"""


def render_server_properties(port: int, controller_port: int, data_dir: Path) -> str:
    """The broker's server.properties: one combined broker+controller node on 127.0.0.1."""
    return f"""process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data_dir}
offsets.topic.replication.factor=1
offsets.topic.num.partitions=5
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
"""

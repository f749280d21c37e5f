"""The dev kit's local Apache Kafka (KRaft) for development and tests, from Maven Central's jars.

Jars are resolved with Maven once into ``$DEVKAFKA_HOME/jars/<version>/`` (default
``./.devkafka``); the long-lived broker of ``make kafka-up`` keeps its state in
``$DEVKAFKA_HOME/run/``. With ``KAFKA_BOOTSTRAP_SERVERS`` set, nothing is started and that address
is used instead.

    python -m consumer.devkit.broker up|down|status|bootstrap [--secured] [--port N] [--nodes N]

The plain broker listens on 127.0.0.1:9092, the settings' default: when that port is taken
(someone else's broker?), `up` refuses instead of choosing another port behind the settings'
back; ``up --port N`` picks one, and `bootstrap` prints whatever the running broker uses.

By concern: `home` (state root, lock, messages), `jars` (Java and Kafka's jars), `ports`,
`properties` (server.properties, log4j2), `storage` (Kafka's StorageTool), `liveness` (is it
ours, gone, serving), `process` (`LocalBroker`), `security` and `oauth` (secured listeners),
`cluster` and `nodes` (`LocalCluster`), `long_lived` (``make kafka-up``'s brokers), `private`
(files only their owner reads), `__main__` (the command line).
"""

from consumer.devkit.broker.home import BrokerError
from consumer.devkit.broker.jars import KAFKA_VERSION
from consumer.devkit.broker.long_lived import bootstrap_servers
from consumer.devkit.broker.ports import free_port, free_ports
from consumer.devkit.broker.process import LocalBroker

__all__ = [
    "KAFKA_VERSION",
    "BrokerError",
    "LocalBroker",
    "bootstrap_servers",
    "free_port",
    "free_ports",
]

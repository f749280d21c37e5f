"""Kafka (layer 2): the only place aiokafka clients are built.

Security checks and client options, producer and consumer factories, connection diagnosis and the
start-up wait, topic helpers, the bounded topic reader, the lenient batch re-reader and the
classification of fetch errors. Imports only the plugin API (layer 0) and `consumer.settings`.
"""

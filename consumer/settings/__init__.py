"""Settings (layer 1): the Structs read from TOML and the environment, and the checks that keep a
setting that parses but cannot work from starting the worker.

Imports only the plugin API (layer 0); the Kafka security checks live in `consumer.kafka`.
"""

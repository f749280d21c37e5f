"""Integration tests against a real local Apache Kafka broker, one directory per feature."""

"""The HTTP ingress: Bandwidth's callbacks to Kafka."""

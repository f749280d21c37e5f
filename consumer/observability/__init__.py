"""Operating the worker: metrics, liveness and readiness, watchers, start-up against Kafka."""

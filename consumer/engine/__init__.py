"""The delivery engine: fetching from Kafka, running handlers, committing only what is finished,
and its plumbing (Kafka connections and admin, plugin discovery, routing, logs)."""

"""Delivery: fetching from Kafka, running handlers, and committing only what is finished."""

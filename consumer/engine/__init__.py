"""The delivery engine (layer 3): fetching from Kafka, running handlers, committing only what is
finished. Its clients come from `consumer.kafka`, its dead letters go through
`consumer.deadletters`; it imports nothing above layer 3."""

"""Dead letters (layer 3): the ``dlq.*`` header schema, the publisher the worker sends them with,
and the ``dlq show`` / ``dlq replay`` commands' work (with the read-back of what a reference
record left out).

Imports the plugin API, settings and `consumer.kafka` (layers 0 to 2), and nothing above.
"""

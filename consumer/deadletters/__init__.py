"""Dead letters (layer 3): the ``dlq.*`` header schema, the publisher the worker sends them with,
and the ``dlq show`` / ``dlq replay`` commands' work.

Imports layers 0 to 3: the plugin API, settings, `consumer.kafka`, and nothing above.
"""

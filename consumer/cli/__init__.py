"""The ``recording-consumer`` command line: the parser in `main`, one small module per command."""

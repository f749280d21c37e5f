"""Integration tests: kafka."""

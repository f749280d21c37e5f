"""Integration tests: observability."""

"""Integration tests: handlers."""

"""Integration tests: worker."""

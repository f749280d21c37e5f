"""Integration tests: deadletters."""

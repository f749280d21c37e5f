"""Integration tests: ingress."""

"""Integration tests: devkit."""

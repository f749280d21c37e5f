"""Handlers that ship with the worker; registered by entry point like any third-party plugin."""

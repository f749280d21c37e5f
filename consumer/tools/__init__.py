"""Operators' tools: the command line, the dead-letter commands, inspect, produce."""

"""Helpers shared by the tests: servers standing in for Bandwidth, S3 and OAuth, worker processes,
drill bookkeeping. Not tests themselves; nothing here is collected."""

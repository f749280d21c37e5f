"""Unit tests: no broker, no JVM; the whole directory runs in seconds (`make test-unit`)."""

"""The dead-letter commands' logic and the bounded topic reader (both moving to their layers)."""

"""The development kit: the testing kit and its pytest plugin, the local broker, samples."""

"""The development kit: the testing kit and its pytest plugin, and the local broker (`broker`)."""

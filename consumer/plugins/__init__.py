"""Handler plugins (layer 1): finding and building the handlers the settings name, and routing a
status to them.

Imports only the plugin API (layer 0) and `consumer.settings`.
"""

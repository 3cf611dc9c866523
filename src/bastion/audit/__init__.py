"""Audit sinks: where connection and statement events go."""

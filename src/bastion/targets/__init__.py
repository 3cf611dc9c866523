"""Upstream databases: where they are, how to reach them, and the credentials Bastion uses."""

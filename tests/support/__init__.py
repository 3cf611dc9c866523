"""Shared helpers for Bastion's test suite: real servers to test against, found or started."""

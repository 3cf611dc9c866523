"""Bastion: an identity-aware governance proxy for databases."""

__version__ = "0.1.0"

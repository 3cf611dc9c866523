"""Fixtures for the masking tests: the session-wide PostgreSQL endpoint from tests/support."""

from __future__ import annotations

from support.servers import postgres_endpoint

__all__ = ["postgres_endpoint"]

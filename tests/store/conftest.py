"""Fixtures for the store helper tests: a scratch PostgreSQL database and fresh schema names.

`store_pg_dsn` is a private database on the real test server, made for this test module and
dropped after it; `pg_schema` gives each test its own schema in it. The SQLite tests use files
in `tmp_path`.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from support.servers import PostgresEndpoint, postgres_endpoint, scratch_database

__all__ = ["postgres_endpoint"]


@pytest.fixture(scope="module")
def store_pg_dsn(postgres_endpoint: PostgresEndpoint) -> Iterator[str]:
    """A private database for this test module, dropped at its end."""
    with scratch_database(postgres_endpoint, "bastion_store_test") as name:
        yield postgres_endpoint.dsn(dbname=name)


@pytest.fixture
def pg_schema() -> str:
    return f"store_{secrets.token_hex(4)}"

"""Fixtures for the catalog tests: the real PostgreSQL and a private copy of the demo shop.

`sample_shop` gives each test module its own database loaded with the demo sample (a few
customers), dropped at the module's end, and helpers to run DDL there and to reach it as a
target runtime would.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from bastion.demo.sample import load_sample
from bastion.targets.runtime import CredentialRef, TargetRuntime
from support.servers import PostgresEndpoint, postgres_endpoint, scratch_database

__all__ = ["SampleShop", "postgres_endpoint", "sample_shop"]

PASSWORD_REF = "env:BASTION_CATALOG_TEST_PASSWORD"


@dataclass(frozen=True)
class SampleShop:
    """The demo shop in a private database of the test server."""

    endpoint: PostgresEndpoint
    database: str

    def dsn(self) -> str:
        return self.endpoint.dsn(dbname=self.database)

    def conninfo_kwargs(self) -> dict[str, Any]:
        return conninfo_to_dict(self.dsn())

    def execute(self, statements: str) -> None:
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(statements.encode())

    def oid(self, relation: str) -> int:
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            row = conn.execute("SELECT %s::regclass::oid::int8", (relation,)).fetchone()
        assert row is not None
        return int(row[0])

    def runtime(self, *, port: int | None = None, database: str | None = None) -> TargetRuntime:
        """A target runtime reaching this database as the test superuser."""
        endpoint = self.endpoint
        password = endpoint.password
        return TargetRuntime(
            name="shop",
            database=database or self.database,
            host=endpoint.host,
            port=port or endpoint.port,
            unix_socket=None,
            tls_mode="disable",
            ssl_context=None,
            labels={},
            connect_timeout=3,
            credentials={
                "default": CredentialRef(endpoint.superuser, PASSWORD_REF if password else None)
            },
            resolve_secret=lambda _ref: password or "",
        )


@pytest.fixture(scope="module")
def sample_shop(postgres_endpoint: PostgresEndpoint) -> Iterator[SampleShop]:
    with scratch_database(postgres_endpoint, "bastion_catalog_test") as name:
        load_sample(postgres_endpoint.admin_conninfo, name, customers=12)
        yield SampleShop(postgres_endpoint, name)

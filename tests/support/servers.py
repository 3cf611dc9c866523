"""The PostgreSQL servers the test suite runs against.

`postgres_for_tests()` finds a superuser endpoint, in this order: the server named by
BASTION_TEST_PG_DSN, the machine's own server on 127.0.0.1:5432 if it trusts `postgres`, or a
throwaway server started for the run. A test run that cannot get any server skips on a developer
machine but fails under CI=true, where a missing server means a broken pipeline, not a reason to
pass quietly. `throwaway_postgres()` gives a test its own server with a chosen auth method or TLS.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bastion.demo.pgserver import PostgresNotFound, PostgresStartFailed, ThrowawayPostgres

DSN_ENV = "BASTION_TEST_PG_DSN"
LOCAL_HOST = "127.0.0.1"
LOCAL_PORT = 5432
CONNECT_TIMEOUT_SECONDS = 3


@dataclass
class PostgresEndpoint:
    """A PostgreSQL server the tests may administer as a superuser."""

    host: str
    port: int
    superuser: str
    password: str | None
    admin_conninfo: str
    throwaway: ThrowawayPostgres | None = None

    def dsn(
        self, dbname: str = "postgres", user: str | None = None, password: str | None = None
    ) -> str:
        """TCP conninfo for `user` (default: the superuser, with its password)."""
        if user is None:
            user, password = self.superuser, self.password
        conninfo = make_conninfo("", host=self.host, port=self.port, user=user, dbname=dbname)
        return conninfo if password is None else make_conninfo(conninfo, password=password)

    def close(self) -> None:
        if self.throwaway is not None:
            self.throwaway.stop()
            self.throwaway = None


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> NoReturn:
    """A missing server fails under CI and skips elsewhere."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing PostgreSQL is a failure)", pytrace=False)
    pytest.skip(reason)


def _superuser_endpoint(conninfo: str) -> PostgresEndpoint | None:
    """Describe the server behind `conninfo` if it accepts us as a superuser over TCP."""
    conninfo = make_conninfo(conninfo, connect_timeout=CONNECT_TIMEOUT_SECONDS)
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            info = conn.info
            if conn.execute("SHOW is_superuser").fetchone() != ("on",):
                return None
            host = info.hostaddr or info.host
            return PostgresEndpoint(
                host=host,
                port=info.port,
                superuser=info.user,
                password=info.password or None,
                admin_conninfo=conninfo,
            )
    except psycopg.Error:
        return None


def postgres_for_tests() -> PostgresEndpoint:
    """Find or start a PostgreSQL superuser endpoint; the caller closes it at session end."""
    configured = os.environ.get(DSN_ENV)
    if configured:
        endpoint = _superuser_endpoint(configured)
        if endpoint is None:
            # An explicit choice that does not work is a mistake to report, never to work around.
            pytest.fail(
                f"{DSN_ENV} is set but does not reach a PostgreSQL superuser", pytrace=False
            )
        return endpoint

    local = make_conninfo("", host=LOCAL_HOST, port=LOCAL_PORT, user="postgres", dbname="postgres")
    endpoint = _superuser_endpoint(local)
    if endpoint is not None:
        return endpoint

    try:
        server = ThrowawayPostgres().start()
    except (PostgresNotFound, PostgresStartFailed) as error:
        unavailable(f"no PostgreSQL to test against: {error.message}")
    return PostgresEndpoint(
        host=server.host,
        port=server.port,
        superuser=server.superuser,
        password=server.superuser_password,
        admin_conninfo=server.admin_dsn(),
        throwaway=server,
    )


@contextmanager
def throwaway_postgres(**kwargs: Any) -> Iterator[ThrowawayPostgres]:
    """A private server for one test or module, e.g. `throwaway_postgres(auth="md5")`."""
    server = ThrowawayPostgres(**kwargs)
    try:
        server.start()
    except PostgresNotFound as error:
        unavailable(f"PostgreSQL server binaries are missing: {error.message}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_endpoint() -> Iterator[PostgresEndpoint]:
    """Session-wide endpoint from `postgres_for_tests()`; import it into a conftest to use it."""
    endpoint = postgres_for_tests()
    try:
        yield endpoint
    finally:
        endpoint.close()


@contextmanager
def scratch_database(endpoint: PostgresEndpoint, prefix: str) -> Iterator[str]:
    """A private, empty database on `endpoint` for one test scope; yields its name and drops it
    (with FORCE: sessions left open by the code under test do not keep it alive)."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(endpoint.admin_conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with psycopg.connect(endpoint.admin_conninfo, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

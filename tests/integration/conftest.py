"""Fixtures for end-to-end tests: a real PostgreSQL with the sample shop, and a real Bastion
process in front of it that the tests reach with real clients."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from bastion.demo.sample import SampleSummary, load_sample
from support.bastion import BastionProcess, running_bastion
from support.servers import PostgresEndpoint, postgres_endpoint

__all__ = ["postgres_endpoint"]


@pytest.fixture(scope="session")
def shop_db(postgres_endpoint: PostgresEndpoint) -> Iterator[tuple[str, SampleSummary]]:
    """A freshly loaded sample database, private to this test run."""
    name = f"bastion_it_{os.getpid()}"
    summary = load_sample(postgres_endpoint.admin_conninfo, name)
    yield name, summary
    with psycopg.connect(postgres_endpoint.admin_conninfo, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def shop_target(
    endpoint: PostgresEndpoint, database: str, **overrides: object
) -> dict[str, object]:
    credential: dict[str, object] = {"user": endpoint.superuser}
    if endpoint.password:
        credential["password"] = "env:BASTION_TEST_UPSTREAM_PASSWORD"
    return {
        "name": "shop",
        "host": endpoint.host,
        "port": endpoint.port,
        "database": database,
        "credentials": {"default": credential},
        "tls": "disable",
        "labels": {"environment": "test"},
        **overrides,
    }


def upstream_env(endpoint: PostgresEndpoint) -> dict[str, str]:
    return {"BASTION_TEST_UPSTREAM_PASSWORD": endpoint.password} if endpoint.password else {}


@contextlib.contextmanager
def running_shop_bastion(
    workdir: Path,
    endpoint: PostgresEndpoint,
    shop_db: tuple[str, SampleSummary],
    *,
    env: dict[str, str] | None = None,
    **kwargs: Any,
) -> Iterator[BastionProcess]:
    """A started Bastion with the single target `shop` on the sample database, stopped on the
    way out. `env` is added to the upstream password's variable; other keyword arguments go to
    BastionProcess."""
    with running_bastion(
        workdir,
        [shop_target(endpoint, shop_db[0])],
        env={**upstream_env(endpoint), **(env or {})},
        **kwargs,
    ) as proc:
        yield proc


@pytest.fixture(scope="module")
def bastion(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_endpoint: PostgresEndpoint,
    shop_db: tuple[str, SampleSummary],
) -> Iterator[BastionProcess]:
    """One Bastion per test module, with target `shop` and the default test users.

    Masking is off here: these tests check that results are exactly what a direct connection
    returns (the protocol, not the policy). test_masking.py has masking on."""
    workdir: Path = tmp_path_factory.mktemp("bastion")
    proc = BastionProcess(
        workdir=workdir,
        targets=[shop_target(postgres_endpoint, shop_db[0])],
        env=upstream_env(postgres_endpoint),
        extra={"masking": {"enabled": False}},
    ).start()
    yield proc
    code = proc.stop()
    assert code == 0, f"bastion exited with {code}:\n{proc.log_text()[-4000:]}"


@pytest.fixture
def direct_dsn(postgres_endpoint: PostgresEndpoint, shop_db: tuple[str, SampleSummary]) -> str:
    return postgres_endpoint.dsn(shop_db[0])

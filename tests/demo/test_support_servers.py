"""The rules tests/support uses to find a PostgreSQL: configured, local, throwaway, or none."""

from __future__ import annotations

import socket

import psycopg
import pytest

from bastion.demo.pgserver import PostgresNotFound, ThrowawayPostgres
from support import servers
from support.servers import postgres_for_tests, throwaway_postgres


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _no_binaries(self: ThrowawayPostgres) -> ThrowawayPostgres:
    raise PostgresNotFound("no binaries here")


@pytest.fixture
def nothing_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    """No configured DSN and nothing listening where the local server would be."""
    monkeypatch.delenv(servers.DSN_ENV, raising=False)
    monkeypatch.setattr(servers, "LOCAL_PORT", _closed_port())


def test_endpoint_is_usable_as_superuser(postgres_endpoint: servers.PostgresEndpoint) -> None:
    with psycopg.connect(postgres_endpoint.dsn()) as conn:
        assert conn.execute("SHOW is_superuser").fetchone() == ("on",)
    with psycopg.connect(postgres_endpoint.admin_conninfo) as conn:
        assert conn.info.user == postgres_endpoint.superuser


def test_configured_dsn_wins(
    monkeypatch: pytest.MonkeyPatch, postgres_endpoint: servers.PostgresEndpoint
) -> None:
    monkeypatch.setenv(servers.DSN_ENV, postgres_endpoint.dsn())
    endpoint = postgres_for_tests()
    assert (endpoint.port, endpoint.throwaway) == (postgres_endpoint.port, None)


def test_a_configured_dsn_that_fails_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv(
        servers.DSN_ENV, f"host=127.0.0.1 port={_closed_port()} user=postgres connect_timeout=2"
    )
    with pytest.raises(pytest.fail.Exception, match=servers.DSN_ENV):
        postgres_for_tests()


@pytest.mark.usefixtures("nothing_configured")
def test_without_a_local_server_a_throwaway_one_is_started() -> None:
    endpoint = postgres_for_tests()
    try:
        assert isinstance(endpoint.throwaway, ThrowawayPostgres)
        with psycopg.connect(endpoint.dsn()) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        endpoint.close()
    assert endpoint.throwaway is None


@pytest.mark.usefixtures("nothing_configured")
@pytest.mark.parametrize(
    ("ci", "outcome"), [("true", pytest.fail.Exception), (None, pytest.skip.Exception)]
)
def test_no_server_at_all_fails_in_ci_and_skips_elsewhere(
    monkeypatch: pytest.MonkeyPatch, ci: str | None, outcome: type[BaseException]
) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    monkeypatch.setattr(ThrowawayPostgres, "start", _no_binaries)
    with pytest.raises(outcome, match="no binaries here"):
        postgres_for_tests()
    with pytest.raises(outcome, match="no binaries here"), throwaway_postgres(auth="md5"):
        pass

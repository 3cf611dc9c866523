"""ThrowawayPostgres against real server binaries: settings, auth methods, TLS, failures."""

from __future__ import annotations

import os
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from bastion.demo import pgserver
from bastion.demo.pgserver import PostgresStartFailed, ThrowawayPostgres
from support.servers import throwaway_postgres


@pytest.fixture(scope="module")
def trust_server() -> Iterator[ThrowawayPostgres]:
    with throwaway_postgres() as server:
        yield server


@pytest.fixture
def no_ambient_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep libpq from finding a password in the environment or a ~/.pgpass file."""
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", os.devnull)


@pytest.fixture
def parent_dir() -> Iterator[Path]:
    """An empty directory the server account can traverse (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="bastion-test-"))
    path.chmod(0o755)
    yield path
    for child in path.iterdir():
        pytest.fail(f"{child} was left behind")
    path.rmdir()


def _scalar(conninfo: str, query: str) -> object:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return row[0]


def test_trust_server_listens_on_loopback_and_its_own_socket(
    trust_server: ThrowawayPostgres,
) -> None:
    with psycopg.connect(trust_server.dsn()) as conn:
        assert conn.info.port == trust_server.port
        row = conn.execute("SELECT host(inet_server_addr()), current_user").fetchone()
        assert row == ("127.0.0.1", "postgres")
    with psycopg.connect(trust_server.admin_dsn()) as conn:
        assert conn.info.host == str(trust_server.socket_dir)
        assert conn.execute("SELECT inet_server_addr()").fetchone() == (None,)
    assert (trust_server.socket_dir / f".s.PGSQL.{trust_server.port}").is_socket()


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("fsync", "off"),
        ("synchronous_commit", "off"),
        ("full_page_writes", "off"),
        ("max_connections", "200"),
        ("shared_buffers", "32MB"),
        ("listen_addresses", "127.0.0.1"),
        ("server_encoding", "UTF8"),
        ("lc_collate", "C"),
        ("password_encryption", "scram-sha-256"),
        ("ssl", "off"),
    ],
)
def test_settings_favour_speed_over_durability(
    trust_server: ThrowawayPostgres, setting: str, expected: str
) -> None:
    assert _scalar(trust_server.admin_dsn(), f"SHOW {setting}") == expected


def test_log_goes_to_a_file_in_the_working_directory(trust_server: ThrowawayPostgres) -> None:
    assert trust_server.log_file.parent == trust_server.work_dir
    assert "ready to accept connections" in trust_server.log_tail(200)


def test_created_roles_and_databases(trust_server: ThrowawayPostgres) -> None:
    trust_server.create_role("report_reader")
    trust_server.create_role("no_login", login=False)
    trust_server.create_database("reports", owner="report_reader")
    dsn = trust_server.dsn("reports", user="report_reader")
    assert _scalar(dsn, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'reports'")
    assert _scalar(dsn, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user") is False
    with pytest.raises(psycopg.OperationalError, match="not permitted to log in"):
        psycopg.connect(trust_server.dsn(user="no_login"))


@pytest.mark.parametrize(
    ("auth", "stored_prefix"),
    [("scram-sha-256", "SCRAM-SHA-256$"), ("md5", "md5"), ("password", "SCRAM-SHA-256$")],
)
@pytest.mark.usefixtures("no_ambient_password")
def test_password_methods_accept_the_right_password_only(auth: str, stored_prefix: str) -> None:
    with throwaway_postgres(auth=auth, superuser_password="su-Secret-1") as server:
        server.create_role("alice", "right horse battery")
        method = _scalar(
            server.admin_dsn(), "SELECT auth_method FROM pg_hba_file_rules WHERE type = 'host'"
        )
        assert method == auth
        with psycopg.connect(server.dsn()) as conn:
            stored = conn.execute(
                "SELECT rolname, rolpassword FROM pg_authid"
                " WHERE rolname IN ('postgres', 'alice') ORDER BY rolname"
            ).fetchall()
        assert [name for name, _ in stored] == ["alice", "postgres"]
        assert all(hashed.startswith(stored_prefix) for _, hashed in stored)

        alice = server.dsn(user="alice", password="right horse battery")
        assert _scalar(alice, "SELECT current_user") == "alice"
        for wrong in (
            server.dsn(user="alice", password="wrong horse"),
            server.dsn(password="su-Secret-2"),
        ):
            with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
                psycopg.connect(wrong)
        with pytest.raises(psycopg.OperationalError, match="no password supplied"):
            psycopg.connect(server.dsn(user="alice"))


def test_ssl_server_requires_tls_with_a_verifiable_certificate() -> None:
    with throwaway_postgres(ssl=True) as server:
        with psycopg.connect(server.dsn(sslmode="require")) as conn:
            assert conn.pgconn.ssl_in_use
            in_use = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            assert in_use.fetchone() == (True,)
        verified = server.dsn(sslmode="verify-full", sslrootcert=str(server.ssl_cert_file))
        assert _scalar(verified, "SELECT 1") == 1
        with pytest.raises(psycopg.OperationalError, match=r"no pg_hba\.conf entry"):
            psycopg.connect(server.dsn(sslmode="disable"))
        key_mode = next(server.ssl_cert_file.parent.glob("*.key")).stat().st_mode
        assert stat.S_IMODE(key_mode) == 0o600


def test_stop_removes_only_the_directory_it_created(parent_dir: Path) -> None:
    (parent_dir / "keep.txt").write_text("not the server's")
    server = ThrowawayPostgres(base_dir=parent_dir).start()
    work_dir, dsn = server.work_dir, server.dsn()
    assert work_dir.parent == parent_dir
    assert _scalar(dsn, "SELECT 1") == 1
    server.stop()
    assert not work_dir.exists()
    assert not server.running
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(make_conninfo(dsn, connect_timeout=2))
    (parent_dir / "keep.txt").unlink()


def test_failed_start_reports_the_log_and_cleans_up(parent_dir: Path) -> None:
    server = ThrowawayPostgres(base_dir=parent_dir, extra_settings={"shared_buffers": "lots"})
    with pytest.raises(PostgresStartFailed, match='invalid value for parameter "shared_buffers"'):
        server.start()
    assert not server.running


def test_an_explicit_port_in_use_is_an_error(parent_dir: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        server = ThrowawayPostgres(base_dir=parent_dir, port=port)
        with pytest.raises(PostgresStartFailed, match=f"port {port}"):
            server.start()


def test_a_chosen_port_taken_meanwhile_is_replaced(
    parent_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken])
        real_free_port = pgserver._free_port
        monkeypatch.setattr(pgserver, "_free_port", lambda: next(ports, None) or real_free_port())
        with ThrowawayPostgres(base_dir=parent_dir) as server:
            assert server.port != taken
            assert _scalar(server.dsn(), "SELECT 1") == 1


@pytest.mark.parametrize(
    "kwargs",
    [{"auth": "ident"}, {"extra_settings": {"work_mem = '1GB'\nfsync": "on"}}],
)
def test_bad_arguments_are_rejected_before_anything_runs(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ThrowawayPostgres(**kwargs)  # type: ignore[arg-type]


def test_nothing_is_available_before_start() -> None:
    server = ThrowawayPostgres()
    with pytest.raises(RuntimeError):
        server.admin_dsn()
    server.stop()  # stopping a server that never started is harmless

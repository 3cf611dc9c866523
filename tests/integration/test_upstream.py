"""Bastion's side of the upstream connection, against private PostgreSQL servers.

Each way PostgreSQL can authenticate a client (SCRAM-SHA-256, MD5, cleartext password, trust)
gets its own server, started on first use and shared by the module, with a Bastion in front of
it. Upstream passwords come from `env:` and `file:` references and must never reach a client or
Bastion's log. The same servers cover Unix sockets, every upstream TLS mode and two-phase commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest
from cryptography import x509

from bastion.demo.pgserver import ThrowawayPostgres
from bastion.session.tls import ensure_auto_certificate
from support.bastion import BastionProcess
from support.servers import throwaway_postgres

DATABASE = "appdb"
ENV_ROLE, FILE_ROLE = "app_env", "app_file"
# Distinctive values, so that a leak into any message or log line is found by a plain search.
ENV_PASSWORD = "Env-pw-3d9e1b7a"
FILE_PASSWORD = "File-pw-71c4aa02"
WRONG_PASSWORD = "Wrong-pw-c05f6289"
PASSWORDS = (ENV_PASSWORD, FILE_PASSWORD, WRONG_PASSWORD)
ENV_REF = "env:BASTION_UPSTREAM_ENV_PASSWORD"
WRONG_REF = "env:BASTION_UPSTREAM_WRONG_PASSWORD"

CLIENT_USER, CLIENT_PASSWORD = "alice", "alice-secret-1"
PASSWORD_METHODS = ("scram-sha-256", "md5", "password")
SERVERS: dict[str, dict[str, Any]] = {
    "scram-sha-256": {"auth": "scram-sha-256"},
    "md5": {"auth": "md5"},
    "password": {"auth": "password"},
    "trust": {"auth": "trust", "extra_settings": {"max_prepared_transactions": "5"}},
    "tls": {"auth": "scram-sha-256", "ssl": True},
}


@dataclass
class Upstream:
    """A private server and the Bastion in front of it."""

    server: ThrowawayPostgres
    bastion: BastionProcess
    uncovered_name: str | None = None  # a name for 127.0.0.1 the server certificate lacks

    def connect(self, target: str, *, autocommit: bool = False) -> psycopg.Connection[Any]:
        dsn = self.bastion.dsn(CLIENT_USER, dbname=target)
        return psycopg.connect(dsn, autocommit=autocommit)

    def refusal(self, target: str) -> asyncpg.PostgresError:
        """The error Bastion answers a connection to `target` with, as asyncpg reports it."""

        async def attempt() -> asyncpg.PostgresError:
            try:
                conn = await asyncpg.connect(
                    host="127.0.0.1",
                    port=self.bastion.port,
                    user=CLIENT_USER,
                    password=CLIENT_PASSWORD,
                    database=target,
                    ssl=False,
                )
            except asyncpg.PostgresError as error:
                return error
            await conn.close()
            raise AssertionError(f"Bastion accepted a connection to target {target!r}")

        return asyncio.run(attempt())

    def server_log(self) -> str:
        return self.server.log_file.read_text(errors="replace")


class Upstreams:
    """Starts each server (and its Bastion) the first time a test asks for it."""

    def __init__(self, stack: contextlib.ExitStack, workdir: Path) -> None:
        self._stack = stack
        self._workdir = workdir
        self._started: dict[str, Upstream] = {}

    def __getitem__(self, kind: str) -> Upstream:
        if kind not in self._started:
            self._started[kind] = self._start(kind)
        return self._started[kind]

    def _start(self, kind: str) -> Upstream:
        settings = dict(SERVERS[kind])
        settings["extra_settings"] = {"log_connections": "on", **settings.get("extra_settings", {})}
        server = self._stack.enter_context(throwaway_postgres(**settings))
        server.create_role(ENV_ROLE, ENV_PASSWORD)
        server.create_role(FILE_ROLE, FILE_PASSWORD)
        server.create_database(DATABASE, owner=ENV_ROLE)
        workdir = self._workdir / kind
        workdir.mkdir()
        uncovered = None
        if kind == "tls":
            uncovered = _loopback_name_outside(_certificate_names(server.ssl_cert_file))
            targets = _tls_targets(server, workdir, uncovered)
        else:
            targets = _plain_targets(server, workdir, kind)
        bastion = BastionProcess(
            workdir=workdir,
            targets=targets,
            env={
                ENV_REF.removeprefix("env:"): ENV_PASSWORD,
                WRONG_REF.removeprefix("env:"): WRONG_PASSWORD,
            },
        ).start()
        self._stack.callback(_stop_cleanly, bastion)
        return Upstream(server, bastion, uncovered)


def _stop_cleanly(bastion: BastionProcess) -> None:
    code = bastion.stop()
    assert code == 0, f"bastion exited with {code}:\n{bastion.log_text()[-4000:]}"


def _target(
    name: str,
    server: ThrowawayPostgres,
    *,
    user: str = ENV_ROLE,
    password: str | None = ENV_REF,
    tls: str = "disable",
    **keys: Any,
) -> dict[str, Any]:
    credential = {"user": user} | ({"password": password} if password else {})
    target = {
        "name": name,
        "host": server.host,
        "port": server.port,
        "database": DATABASE,
        "credentials": {"default": credential},
        "tls": tls,
        "connect_timeout_seconds": 5,
    }
    return target | keys


def _plain_targets(server: ThrowawayPostgres, workdir: Path, kind: str) -> list[dict[str, Any]]:
    password_file = workdir / "app_file.password"
    # One trailing newline is how most editors save a file; Bastion strips exactly that.
    password_file.write_text(FILE_PASSWORD + "\n")
    password_file.chmod(0o600)
    targets = [
        _target("via_env", server),
        _target("via_file", server, user=FILE_ROLE, password=f"file:{password_file}"),
        _target("wrong_password", server, password=WRONG_REF),
        _target("no_password", server, password=None),
    ]
    if kind == "scram-sha-256":
        socket_target = _target("via_socket", server)
        del socket_target["host"]
        socket_target["unix_socket"] = str(server.socket_dir)
        targets += [
            socket_target,
            _target("tls_require", server, tls="require"),
            _target("tls_prefer", server, tls="prefer"),
        ]
    return targets


def _tls_targets(
    server: ThrowawayPostgres, workdir: Path, uncovered_name: str | None
) -> list[dict[str, Any]]:
    cert = str(server.ssl_cert_file)
    unrelated_ca = str(ensure_auto_certificate(workdir / "unrelated").ca)
    targets = [
        _target("tls_require", server, tls="require"),
        _target("tls_verify_ca", server, tls="verify-ca", tls_ca=cert),
        _target("tls_verify_full_ip", server, tls="verify-full", tls_ca=cert),
        _target("tls_verify_full_name", server, host="localhost", tls="verify-full", tls_ca=cert),
        _target("tls_unrelated_ca", server, tls="verify-ca", tls_ca=unrelated_ca),
    ]
    if uncovered_name is not None:
        targets.append(
            _target(
                "tls_verify_full_uncovered",
                server,
                host=uncovered_name,
                tls="verify-full",
                tls_ca=cert,
            )
        )
    return targets


def _certificate_names(path: Path) -> set[str]:
    """The DNS names and IP addresses a certificate's subjectAltName covers, as text."""
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {*names.get_values_for_type(x509.DNSName)} | {
        str(ip) for ip in names.get_values_for_type(x509.IPAddress)
    }


def _loopback_name_outside(covered: set[str]) -> str | None:
    """A host name that resolves to 127.0.0.1 but that the certificate does not name."""
    name = socket.gethostname()
    if not name or name in covered:
        return None
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, None, socket.AF_INET)}
    except OSError:
        return None
    return name if addresses == {"127.0.0.1"} else None


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstreams]:
    with contextlib.ExitStack() as stack:
        yield Upstreams(stack, tmp_path_factory.mktemp("upstreams"))


def _assert_no_password_leaked(upstream: Upstream, *texts: str) -> None:
    for text in (*texts, upstream.bastion.log_text()):
        for password in PASSWORDS:
            assert password not in text


# Authentication methods.


@pytest.mark.parametrize("method", [*PASSWORD_METHODS, "trust"])
@pytest.mark.parametrize(("target", "role"), [("via_env", ENV_ROLE), ("via_file", FILE_ROLE)])
def test_upstream_password_reference_logs_in_as_the_upstream_role(
    upstreams: Upstreams, method: str, target: str, role: str
) -> None:
    upstream = upstreams[method]
    with upstream.connect(target) as conn:
        assert conn.execute("SELECT current_user, session_user").fetchone() == (role, role)
    if method != "trust":
        # The server's own record of how it authenticated Bastion's connection.
        assert f'identity="{role}" method={method}' in upstream.server_log()
    _assert_no_password_leaked(upstream)


def test_md5_server_sends_the_md5_challenge(upstreams: Upstreams) -> None:
    # Given a SCRAM verifier, an md5 server quietly runs SCRAM; only an MD5 hash keeps it on MD5.
    with psycopg.connect(upstreams["md5"].server.admin_dsn()) as admin:
        stored = admin.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (ENV_ROLE,)
        ).fetchone()
    assert stored is not None and stored[0].startswith("md5")


@pytest.mark.parametrize("method", PASSWORD_METHODS)
def test_wrong_upstream_password_is_08006_naming_the_target(
    upstreams: Upstreams, method: str
) -> None:
    upstream = upstreams[method]
    error = upstream.refusal("wrong_password")
    assert error.sqlstate == "08006"
    assert 'target "wrong_password"' in error.message
    assert "authentication failed" in error.message
    assert ENV_ROLE not in error.message  # the upstream role stays an operator's business
    with pytest.raises(psycopg.OperationalError) as info:
        upstream.connect("wrong_password")
    assert 'target "wrong_password"' in str(info.value)
    # The operator finds the server's own reason in Bastion's log.
    refusals = [
        event
        for event in upstream.bastion.log_events()
        if event.get("msg") == "upstream refused the connection"
        and event.get("target") == "wrong_password"
    ]
    assert refusals and refusals[-1]["sqlstate"] == "28P01"
    _assert_no_password_leaked(upstream, str(error), error.hint or "", str(info.value))


@pytest.mark.parametrize("method", PASSWORD_METHODS)
def test_credential_without_password_is_08006_when_the_server_asks(
    upstreams: Upstreams, method: str
) -> None:
    error = upstreams[method].refusal("no_password")
    assert error.sqlstate == "08006"
    assert 'target "no_password"' in error.message
    assert "has none" in error.message


def test_trust_server_needs_no_password(upstreams: Upstreams) -> None:
    with upstreams["trust"].connect("no_password") as conn:
        assert conn.execute("SELECT current_user").fetchone() == (ENV_ROLE,)


# Unix socket.


def test_upstream_over_unix_socket(upstreams: Upstreams) -> None:
    upstream = upstreams["scram-sha-256"]
    with upstream.connect("via_socket") as conn:
        row = conn.execute("SELECT current_user, inet_server_addr() IS NULL").fetchone()
    assert row == (ENV_ROLE, True)  # no server address: the backend is on the Unix socket
    assert f'identity="{ENV_ROLE}" method=scram-sha-256' in upstream.server_log()


# Upstream TLS.


def _backend_uses_tls(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
    assert row is not None
    return bool(row[0])


@pytest.mark.parametrize("target", ["tls_require", "tls_verify_ca", "tls_verify_full_name"])
def test_upstream_tls_modes_encrypt(upstreams: Upstreams, target: str) -> None:
    with upstreams["tls"].connect(target) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (ENV_ROLE,)
        assert _backend_uses_tls(conn)


def test_verify_full_by_ip_follows_what_the_certificate_covers(upstreams: Upstreams) -> None:
    upstream = upstreams["tls"]
    # The certificate is issued to localhost; whether 127.0.0.1 passes depends on its SANs.
    if "127.0.0.1" in _certificate_names(upstream.server.ssl_cert_file):
        with upstream.connect("tls_verify_full_ip") as conn:
            assert _backend_uses_tls(conn)
    else:
        error = upstream.refusal("tls_verify_full_ip")
        assert error.sqlstate == "08006"
        assert "TLS" in error.message


def test_verify_full_refuses_a_name_the_certificate_lacks(upstreams: Upstreams) -> None:
    upstream = upstreams["tls"]
    if upstream.uncovered_name is None:
        pytest.skip("no host name other than those in the certificate resolves to 127.0.0.1")
    error = upstream.refusal("tls_verify_full_uncovered")
    assert error.sqlstate == "08006"
    assert 'target "tls_verify_full_uncovered"' in error.message
    assert "TLS handshake failed" in error.message
    assert "hostname" in error.message.lower()


def test_verify_ca_refuses_a_certificate_from_another_ca(upstreams: Upstreams) -> None:
    error = upstreams["tls"].refusal("tls_unrelated_ca")
    assert error.sqlstate == "08006"
    assert 'target "tls_unrelated_ca"' in error.message
    assert "TLS handshake failed" in error.message
    assert "certificate verify failed" in error.message


def test_tls_require_against_a_server_without_tls_is_08006(upstreams: Upstreams) -> None:
    error = upstreams["scram-sha-256"].refusal("tls_require")
    assert error.sqlstate == "08006"
    assert 'target "tls_require"' in error.message
    assert "does not support TLS" in error.message


def test_tls_prefer_against_a_server_without_tls_uses_plaintext(upstreams: Upstreams) -> None:
    with upstreams["scram-sha-256"].connect("tls_prefer") as conn:
        assert conn.execute("SELECT current_user").fetchone() == (ENV_ROLE,)
        assert not _backend_uses_tls(conn)


# Two-phase commit.


def test_two_phase_commit_across_sessions(upstreams: Upstreams) -> None:
    upstream = upstreams["trust"]
    with upstream.connect("via_env", autocommit=True) as setup:
        setup.execute("CREATE TABLE ledger (id int PRIMARY KEY, note text)")
    with upstream.connect("via_env", autocommit=True) as first:
        first.execute("BEGIN")
        first.execute("INSERT INTO ledger VALUES (1, 'kept')")
        first.execute("PREPARE TRANSACTION 'bastion_x'")
        first.execute("BEGIN")
        first.execute("INSERT INTO ledger VALUES (2, 'dropped')")
        first.execute("PREPARE TRANSACTION 'bastion_y'")
        # Prepared, the rows belong to no session: this one sees neither.
        assert first.execute("SELECT count(*) FROM ledger").fetchone() == (0,)
    with upstream.connect("via_env", autocommit=True) as second:
        prepared = second.execute("SELECT gid FROM pg_prepared_xacts ORDER BY gid").fetchall()
        assert prepared == [("bastion_x",), ("bastion_y",)]
        second.execute("COMMIT PREPARED 'bastion_x'")
        second.execute("ROLLBACK PREPARED 'bastion_y'")
        assert second.execute("SELECT id, note FROM ledger").fetchall() == [(1, "kept")]
        assert second.execute("SELECT count(*) FROM pg_prepared_xacts").fetchone() == (0,)

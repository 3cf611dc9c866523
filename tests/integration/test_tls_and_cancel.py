"""TLS between clients and Bastion, and query cancellation through it, with real clients.

Clients see the server's real backend pid but a cancel key chosen by Bastion; a CancelRequest
is forwarded upstream only when its key matches. These tests cancel with psycopg (both the
classic and the libpq 17+ cancel paths) and with psql's SIGINT handler, and check that a guessed
key cancels nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import re
import secrets
import select
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bastion.wire.postgres.codes import SSL_REQUEST_CODE
from bastion.wire.postgres.startup import encode_cancel_request
from support.bastion import BastionProcess, free_port, running_bastion
from support.servers import PostgresEndpoint

from .conftest import shop_target, upstream_env

# psql's \conninfo says "SSL connection (protocol: TLSv1.3, ...)"; from psql 18 on it prints a
# table with an "SSL Protocol | TLSv1.3" row.
TLS_IN_PSQL = re.compile(r"SSL connection \(protocol: TLSv1\.|SSL Protocol\s*\|\s*TLSv1\.")
WAIT_SECONDS = 10.0


def _psql(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["psql", dsn, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _events(bastion: BastionProcess, **match: Any) -> list[dict[str, Any]]:
    return [
        event
        for event in bastion.log_events()
        if all(event.get(key) == value for key, value in match.items())
    ]


def _wait_for_event(bastion: BastionProcess, **match: Any) -> dict[str, Any]:
    # Bastion writes an audit line after the client has its answer, so give it a moment.
    deadline = time.monotonic() + WAIT_SECONDS
    while not (found := _events(bastion, **match)):
        assert time.monotonic() < deadline, f"no log event {match}:\n{bastion.log_text()[-3000:]}"
        time.sleep(0.05)
    return found[-1]


def _wait_until_sleeping(
    direct_dsn: str, *, pid: int | None = None, application_name: str | None = None
) -> None:
    """Poll the server until the backend with this pid or application name runs pg_sleep."""
    query = (
        "SELECT 1 FROM pg_stat_activity WHERE (pid = %s OR application_name = %s) "
        "AND state = 'active' AND query LIKE '%%pg_sleep%%'"
    )
    deadline = time.monotonic() + WAIT_SECONDS
    with psycopg.connect(direct_dsn, autocommit=True) as admin:
        while admin.execute(query, (pid, application_name)).fetchone() is None:
            assert time.monotonic() < deadline, "the statement to cancel never started"
            time.sleep(0.05)


def _in_background(action: Callable[[], None]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def _wait_until_closed_by_bastion(conn: psycopg.Connection[Any]) -> None:
    """Read what arrives on an idle connection until Bastion closes it (bounded)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while conn.pgconn.status == pq.ConnStatus.OK:
        assert time.monotonic() < deadline, "Bastion kept the client's connection open"
        select.select([conn.fileno()], [], [], 0.1)
        with contextlib.suppress(psycopg.OperationalError):
            conn.pgconn.consume_input()


# Client TLS.


def test_psql_sslmode_require_uses_tls(bastion: BastionProcess) -> None:
    result = _psql(bastion.dsn(sslmode="require", application_name="psql-tls"), "-c", "\\conninfo")
    assert result.returncode == 0, result.stderr
    assert TLS_IN_PSQL.search(result.stdout), result.stdout
    assert _wait_for_event(bastion, event="connect", application_name="psql-tls")[
        "tls_version"
    ].startswith("TLSv1.")


@pytest.mark.parametrize(("sslmode", "encrypted"), [("require", True), ("disable", False)])
def test_psycopg_reports_whether_tls_is_in_use(
    bastion: BastionProcess, sslmode: str, encrypted: bool
) -> None:
    name = f"psycopg-{sslmode}"
    with psycopg.connect(bastion.dsn(sslmode=sslmode, application_name=name)) as conn:
        assert conn.pgconn.ssl_in_use is encrypted
        assert conn.execute("SELECT 1").fetchone() == (1,)
    event = _wait_for_event(bastion, event="connect", application_name=name)
    assert ("tls_version" in event) is encrypted


def test_verify_full_against_bastions_ca(bastion: BastionProcess) -> None:
    dsn = make_conninfo(
        bastion.dsn(sslmode="verify-full", sslrootcert=str(bastion.ca_file)), host="localhost"
    )
    with psycopg.connect(dsn) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("SELECT current_database()").fetchone() is not None
    result = _psql(dsn, "-c", "\\conninfo")
    assert result.returncode == 0, result.stderr
    assert TLS_IN_PSQL.search(result.stdout), result.stdout


def _write_ca(path: Path, common_name: str) -> Path:
    """A self-signed CA certificate that has never signed anything Bastion presents."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


# An unrelated CA, and an impostor with the very name of Bastion's generated CA.
@pytest.mark.parametrize("common_name", ["Some other CA", "Bastion local CA"])
def test_verify_full_with_another_ca_fails_on_the_client(
    bastion: BastionProcess, tmp_path: Path, common_name: str
) -> None:
    other_ca = _write_ca(tmp_path / "other-ca.crt", common_name)
    dsn = make_conninfo(
        bastion.dsn(sslmode="verify-full", sslrootcert=str(other_ca)), host="localhost"
    )
    with pytest.raises(psycopg.OperationalError, match="SSL error"):
        psycopg.connect(dsn)
    result = _psql(dsn, "-c", "SELECT 1")
    assert result.returncode != 0
    assert "SSL error" in result.stderr
    with psycopg.connect(bastion.dsn()) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_client_abandoning_the_tls_handshake_is_not_an_internal_error(
    bastion: BastionProcess, tmp_path: Path
) -> None:
    # Clients that do not trust the certificate, scanners and broken clients are routine.
    other_ca = _write_ca(tmp_path / "other-ca.crt", "Some other CA")
    dsn = make_conninfo(
        bastion.dsn(sslmode="verify-full", sslrootcert=str(other_ca)), host="localhost"
    )
    seen = len(bastion.log_events())
    with pytest.raises(psycopg.OperationalError, match="SSL error"):
        psycopg.connect(dsn)
    with socket.create_connection(("127.0.0.1", bastion.port), timeout=5) as sock:
        sock.sendall(struct.pack("!II", 8, SSL_REQUEST_CODE))
        assert sock.recv(1) == b"S"
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")  # not a TLS ClientHello
        with contextlib.suppress(OSError):
            sock.recv(1024)  # returns once Bastion has given up on the handshake
    # The failed handshakes are handled long before a later client has finished logging in.
    with psycopg.connect(bastion.dsn(application_name="after-handshake-failure")):
        pass
    _wait_for_event(bastion, event="connect", application_name="after-handshake-failure")
    since = bastion.log_events()[seen:]
    assert not [event for event in since if event.get("level") == "error"]
    assert not [event for event in since if event.get("outcome") == "XX000"]


@pytest.fixture(scope="module")
def plain_bastion(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_endpoint: PostgresEndpoint,
    shop_db: tuple[str, object],
) -> Iterator[BastionProcess]:
    """A Bastion whose listener has `tls: off`."""
    with running_bastion(
        tmp_path_factory.mktemp("plain"),
        [shop_target(postgres_endpoint, shop_db[0])],
        listener={"tls": "off"},
        env=upstream_env(postgres_endpoint),
    ) as proc:
        yield proc


def _answer_to_ssl_request(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(struct.pack("!II", 8, SSL_REQUEST_CODE))
        return sock.recv(1)


def test_listener_without_tls_declines_ssl_request(
    plain_bastion: BastionProcess, bastion: BastionProcess
) -> None:
    assert _answer_to_ssl_request(plain_bastion.port) == b"N"
    assert _answer_to_ssl_request(bastion.port) == b"S"
    with pytest.raises(psycopg.OperationalError, match="does not support SSL"):
        psycopg.connect(plain_bastion.dsn(sslmode="require"))
    with psycopg.connect(plain_bastion.dsn(sslmode="disable")) as conn:
        assert not conn.pgconn.ssl_in_use
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with psycopg.connect(plain_bastion.dsn(sslmode="prefer")) as conn:
        assert not conn.pgconn.ssl_in_use


@pytest.fixture(scope="module")
def strict_bastion(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_endpoint: PostgresEndpoint,
    shop_db: tuple[str, object],
) -> Iterator[tuple[BastionProcess, str, int]]:
    """A Bastion with `require_tls: true` on two loopback listeners: one trusts loopback as
    local, the other (`trust_loopback: false`) treats its clients as if they came from
    another host, which is how the refusal path is exercised without leaving loopback."""
    address = "127.0.0.1"
    loopback_port, outside_port = free_port(), free_port()
    listeners = [
        {"host": address, "port": loopback_port, "tls": "auto", "require_tls": True},
        {
            "host": address,
            "port": outside_port,
            "tls": "auto",
            "require_tls": True,
            "trust_loopback": False,
        },
    ]
    with running_bastion(
        tmp_path_factory.mktemp("strict"),
        [shop_target(postgres_endpoint, shop_db[0])],
        port=loopback_port,
        extra={"listeners": {"postgres": listeners}},
        env=upstream_env(postgres_endpoint),
    ) as proc:
        yield proc, address, outside_port


def test_require_tls_refuses_plaintext_unless_the_client_is_trusted_local(
    strict_bastion: tuple[BastionProcess, str, int],
) -> None:
    proc, address, outside_port = strict_bastion

    def outside(**params: Any) -> str:
        return make_conninfo(proc.dsn(**params), host=address, port=outside_port)

    async def refusal() -> asyncpg.PostgresError:
        params = conninfo_to_dict(outside())
        try:
            conn = await asyncpg.connect(
                host=address,
                port=outside_port,
                user=params["user"],
                password=params["password"],
                database=params["dbname"],
                ssl=False,
            )
        except asyncpg.PostgresError as error:
            return error
        await conn.close()
        raise AssertionError("a plaintext client on an untrusted listener was let in")

    error = asyncio.run(refusal())
    assert error.sqlstate == "28000"
    assert error.message == "this Bastion listener requires TLS"
    with pytest.raises(psycopg.OperationalError, match="requires TLS"):
        psycopg.connect(outside(sslmode="disable"))
    with psycopg.connect(outside(sslmode="require")) as conn:
        assert conn.pgconn.ssl_in_use
    # Loopback traffic never leaves the machine: whoever could read it already controls the
    # host, so TLS would protect nothing and local tools may connect without it.
    with psycopg.connect(proc.dsn(sslmode="disable")) as conn:
        assert not conn.pgconn.ssl_in_use
        assert conn.execute("SELECT 1").fetchone() == (1,)


# Cancellation.


@pytest.mark.parametrize("method", ["cancel", "cancel_safe"])
def test_psycopg_cancel_from_another_thread(
    bastion: BastionProcess, direct_dsn: str, method: str
) -> None:
    with psycopg.connect(bastion.dsn()) as conn:
        pid = conn.info.backend_pid

        def cancel_when_sleeping() -> None:
            _wait_until_sleeping(direct_dsn, pid=pid)
            getattr(conn, method)()

        thread, errors = _in_background(cancel_when_sleeping)
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(30)")
        elapsed = time.monotonic() - started
        thread.join(WAIT_SECONDS)
        assert not errors
        assert elapsed < WAIT_SECONDS
        conn.rollback()
        assert conn.execute("SELECT 'still usable'").fetchone() == ("still usable",)
        assert conn.info.backend_pid == pid


def test_psql_sigint_cancels_the_running_statement(
    bastion: BastionProcess, direct_dsn: str
) -> None:
    name = f"psql-sigint-{os.getpid()}"
    with subprocess.Popen(
        ["psql", bastion.dsn(application_name=name), "-X", "-c", "SELECT pg_sleep(30)"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as psql:
        try:
            _wait_until_sleeping(direct_dsn, application_name=name)
            psql.send_signal(signal.SIGINT)
            _, stderr = psql.communicate(timeout=20)
        finally:
            if psql.poll() is None:
                psql.kill()
                psql.communicate()
    assert "canceling statement due to user request" in stderr
    assert psql.returncode != 0


def test_cancel_request_with_a_wrong_key_cancels_nothing(
    bastion: BastionProcess, direct_dsn: str
) -> None:
    ignored = len(_events(bastion, msg="cancel request with an unknown key ignored"))
    # Protocol 3.0 keys are 4 bytes; 3.2 allows longer ones. None of these is the right key.
    wrong_keys = [secrets.token_bytes(4), b"\x00" * 4, secrets.token_bytes(32)]
    with psycopg.connect(bastion.dsn(), autocommit=True) as conn:
        pid = conn.info.backend_pid

        def guess_keys() -> None:
            _wait_until_sleeping(direct_dsn, pid=pid)
            for key in wrong_keys:
                with socket.create_connection(("127.0.0.1", bastion.port), timeout=5) as sock:
                    sock.sendall(encode_cancel_request(pid, key))
                    assert sock.recv(1) == b""  # no reply, then the connection closes

        thread, errors = _in_background(guess_keys)
        row = conn.execute("SELECT pg_sleep(2), 'slept'").fetchone()
        thread.join(WAIT_SECONDS)
        assert not errors
        assert row is not None and row[1] == "slept"
    deadline = time.monotonic() + WAIT_SECONDS
    while len(_events(bastion, msg="cancel request with an unknown key ignored")) < ignored + 3:
        assert time.monotonic() < deadline, "Bastion did not see every wrong cancel request"
        time.sleep(0.05)


def test_terminated_backend_ends_the_proxied_session(
    bastion: BastionProcess, direct_dsn: str
) -> None:
    with psycopg.connect(bastion.dsn(application_name="to-terminate")) as conn:
        pid = conn.info.backend_pid
        assert conn.execute("SELECT pg_backend_pid()").fetchone() == (pid,)
        conn.commit()
        with psycopg.connect(direct_dsn, autocommit=True) as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
        _wait_until_closed_by_bastion(conn)
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    session = _wait_for_event(bastion, event="connect", application_name="to-terminate")
    ended = _wait_for_event(bastion, event="disconnect", session_id=session["session_id"])
    assert ended["reason"] == "server disconnected"
    assert bastion.alive
    with psycopg.connect(bastion.dsn()) as conn:
        assert conn.execute("SELECT 'bastion is still up'").fetchone() == ("bastion is still up",)

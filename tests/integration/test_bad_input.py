"""Hostile and broken input at every phase of a connection, against a real Bastion and a real
PostgreSQL: guessed passwords and user names, brute force, malformed startup packets, protocol
violations after login, slow clients, unreachable or misconfigured upstreams and bad
configuration files.

Every attack must end in a precise error and a closed connection, leak no secret, and leave
Bastion and every other session running: a session opened before the attacks, and a new login,
are checked after each test.
"""

from __future__ import annotations

import base64
import random
import socket
import ssl
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import yaml
from scramp import ScramClient

from bastion.demo.sample import SampleSummary
from bastion.wire.postgres import frontend, startup
from bastion.wire.postgres.codes import CANCEL_REQUEST_CODE, PROTOCOL_3_0, SSL_REQUEST_CODE
from bastion.wire.postgres.framing import cstr, frame
from support.bastion import BastionProcess, free_port, running_bastion
from support.rawpg import SCRAM, ErrorReceived, RawConnection, ServerError
from support.servers import PostgresEndpoint, throwaway_postgres

from .conftest import running_shop_bastion, shop_target, upstream_env

ALICE, ALICE_PASSWORD = "alice", "alice-secret-1"
AGENT, AGENT_PASSWORD = "agent7", "agent-secret-7"
# Small enough that an oversized message is cheap to declare, big enough for any real query.
MAX_MESSAGE = 1 << 20
MAX_STARTUP = 10_000
CLOSE_TIMEOUT = 5.0


# Fixtures.


@pytest.fixture(scope="module")
def bastion(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_endpoint: PostgresEndpoint,
    shop_db: tuple[str, SampleSummary],
) -> Iterator[BastionProcess]:
    """This module's Bastion: target `shop`, target `nowhere` on a closed port, a 1 MiB message
    limit, and an auth-failure limit high enough that the attacks here never trip it (rate
    limiting is tried on its own Bastion)."""
    proc = BastionProcess(
        workdir=tmp_path_factory.mktemp("bastion-bad-input"),
        targets=[
            shop_target(postgres_endpoint, shop_db[0]),
            shop_target(postgres_endpoint, shop_db[0], name="nowhere", port=free_port()),
        ],
        env=upstream_env(postgres_endpoint),
        extra={
            "limits": {
                "max_message_bytes": MAX_MESSAGE,
                "max_startup_packet_bytes": MAX_STARTUP,
                "auth_failures_per_minute": 1000,
            }
        },
    ).start()
    yield proc
    code = proc.stop()
    assert code == 0, f"bastion exited with {code}:\n{proc.log_text()[-4000:]}"


@pytest.fixture(scope="module")
def witness(bastion: BastionProcess) -> Iterator[psycopg.Connection]:
    """A session opened before any attack, which must keep working through all of them."""
    with psycopg.connect(bastion.dsn(application_name="bastion-witness"), autocommit=True) as conn:
        yield conn


@pytest.fixture(autouse=True)
def _bastion_survives(bastion: BastionProcess, witness: psycopg.Connection) -> Iterator[None]:
    yield
    assert_unharmed(bastion, witness)


def assert_unharmed(proc: BastionProcess, witness: psycopg.Connection) -> None:
    """Bastion still runs, the earlier session still answers, a new login still works, and no
    attack reached an unhandled code path."""
    assert proc.alive, f"bastion died:\n{proc.log_text()[-4000:]}"
    assert witness.execute("SELECT 1").fetchone() == (1,)
    with psycopg.connect(proc.dsn(connect_timeout=5)) as conn:
        assert conn.execute("SELECT 2").fetchone() == (2,)
    log = proc.log_text()
    assert "internal error" not in log
    assert "Traceback" not in log


def raw(proc: BastionProcess, source_host: str | None = None) -> RawConnection:
    return RawConnection.open("127.0.0.1", proc.port, source_host=source_host)


def error_then_close(conn: RawConnection, timeout: float | None = None) -> ServerError:
    """The server's next message is a FATAL ErrorResponse, and then it hangs up."""
    error = conn.read_error(timeout)
    assert error.severity == "FATAL", error.fields
    assert conn.wait_closed(CLOSE_TIMEOUT), "the connection stayed open after a FATAL error"
    return error


def login_error(proc: BastionProcess, user: str, password: str, **params: str) -> ServerError:
    with raw(proc) as conn:
        with pytest.raises(ErrorReceived) as caught:
            conn.login(user, password, **params)
        assert conn.wait_closed(CLOSE_TIMEOUT)
    return caught.value.error


def psycopg_refusal(dsn: str) -> str:
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect(dsn, connect_timeout=5)
    return str(caught.value)


# Authentication: wrong passwords and unknown users are indistinguishable.


def test_wrong_password_and_unknown_user_get_the_same_error_through_psycopg(
    bastion: BastionProcess,
) -> None:
    wrong = psycopg_refusal(bastion.dsn(password="not-alices-password"))
    unknown = psycopg_refusal(bastion.dsn(user="mallory", password="not-alices-password"))
    assert 'password authentication failed for user "alice"' in wrong
    assert 'password authentication failed for user "mallory"' in unknown
    assert wrong.replace('"alice"', '"X"') == unknown.replace('"mallory"', '"X"')


def test_wrong_password_and_unknown_user_get_the_same_error_on_the_wire(
    bastion: BastionProcess,
) -> None:
    wrong = login_error(bastion, ALICE, "not-alices-password", database="shop")
    unknown = login_error(bastion, "mallory", "not-alices-password", database="shop")
    assert wrong.sqlstate == unknown.sqlstate == "28P01"
    assert wrong.message == 'password authentication failed for user "alice"'
    assert unknown.message == 'password authentication failed for user "mallory"'
    assert {k: v.replace("alice", "X") for k, v in wrong.fields.items()} == {
        k: v.replace("mallory", "X") for k, v in unknown.fields.items()
    }


def test_scram_challenge_does_not_reveal_unknown_users(bastion: BastionProcess) -> None:
    def server_first(user: str) -> tuple[bytes, int, str]:
        with raw(bastion) as conn:
            first = conn.scram_server_first(user, database="shop")
        return first.salt, first.iterations, first.nonce

    real = [server_first(ALICE) for _ in range(2)]
    fake = [server_first("mallory") for _ in range(2)]
    other_fake = server_first("trudy")
    # A real user's salt never changes; an unknown user's must not either, or a second try
    # would tell them apart. Iteration counts and salt lengths must match a real user's.
    assert real[0][0] == real[1][0]
    assert fake[0][0] == fake[1][0]
    assert fake[0][1] == fake[1][1] == real[0][1]
    assert len(fake[0][0]) == len(real[0][0])
    # One constant salt for every unknown name would be a tell of its own.
    assert fake[0][0] != other_fake[0] != real[0][0]
    assert len({nonce for _, _, nonce in [*real, *fake]}) == 4


# Rate limiting.


def test_brute_force_is_rate_limited_per_address_and_per_user(
    tmp_path: Path, postgres_endpoint: PostgresEndpoint, shop_db: tuple[str, SampleSummary]
) -> None:
    """Failures are counted against the client's address and against the user name: once
    either has `auth_failures_per_minute` recent failures, every attempt through it is refused
    before any password exchange, even with the right password. The tests all run on one
    machine, so other addresses are other loopback addresses (127.0.0.2, ...)."""
    with running_shop_bastion(
        tmp_path,
        postgres_endpoint,
        shop_db,
        extra={"limits": {"auth_failures_per_minute": 3}},
    ) as limited:
        with psycopg.connect(limited.dsn(), autocommit=True) as witness:
            for _ in range(3):
                error = login_error(limited, ALICE, "guess", database="shop")
                assert error.message == 'password authentication failed for user "alice"'

            def refused(user: str, password: str, source: str) -> None:
                with raw(limited, source_host=source) as conn:
                    conn.startup(user=user, database="shop")
                    # Refused before the SCRAM exchange starts: nothing left to guess against.
                    error = error_then_close(conn)
                assert error.sqlstate == "28P01", error.fields
                assert error.message.startswith("too many failed authentication attempts")

            refused(ALICE, ALICE_PASSWORD, "127.0.0.1")  # the right password, all the same
            refused(AGENT, AGENT_PASSWORD, "127.0.0.1")  # the address is blocked
            refused(ALICE, ALICE_PASSWORD, "127.0.0.2")  # so is the user, from anywhere
            assert "too many failed authentication attempts" in psycopg_refusal(limited.dsn())
            with raw(limited, source_host="127.0.0.3") as conn:
                conn.login(AGENT, AGENT_PASSWORD, database="shop")
                assert conn.query("SELECT 1").rows == 1
            assert limited.alive
            assert witness.execute("SELECT 1").fetchone() == (1,)
        assert limited.stop() == 0


# Targets and upstreams.


def test_unknown_target_is_reported_only_after_authentication(bastion: BastionProcess) -> None:
    error = login_error(bastion, ALICE, ALICE_PASSWORD, database="no_such_target")
    assert error.sqlstate == "3D000"
    assert error.message == 'target "no_such_target" does not exist'
    assert 'target "no_such_target" does not exist' in psycopg_refusal(
        bastion.dsn(dbname="no_such_target")
    )
    # Without valid credentials the target's existence is not revealed.
    for user in (ALICE, "mallory"):
        error = login_error(bastion, user, "guess", database="no_such_target")
        assert error.sqlstate == "28P01"
        assert error.message == f'password authentication failed for user "{user}"'


def test_unreachable_upstream_names_the_target(bastion: BastionProcess) -> None:
    error = login_error(bastion, ALICE, ALICE_PASSWORD, database="nowhere")
    assert error.sqlstate == "08006"
    assert 'could not connect to target "nowhere"' in error.message
    assert 'could not connect to target "nowhere"' in psycopg_refusal(bastion.dsn(dbname="nowhere"))


def test_upstream_refusing_bastions_password_leaks_no_secret(
    tmp_path: Path, postgres_endpoint: PostgresEndpoint, shop_db: tuple[str, SampleSummary]
) -> None:
    upstream_password = "Upstream-Real-" + uuid.uuid4().hex
    configured = "Configured-Wrong-" + uuid.uuid4().hex
    with throwaway_postgres(auth="scram-sha-256", superuser_password=upstream_password) as server:
        # The server really does demand a password, and the right one would work.
        with psycopg.connect(server.dsn(), connect_timeout=5) as direct:
            assert direct.execute("SELECT 1").fetchone() == (1,)
        locked = {
            "name": "locked",
            "host": server.host,
            "port": server.port,
            "database": "postgres",
            "credentials": {
                "default": {"user": server.superuser, "password": "env:BASTION_LOCKED_PASSWORD"}
            },
            "tls": "disable",
        }
        with running_bastion(
            tmp_path,
            [shop_target(postgres_endpoint, shop_db[0]), locked],
            env={**upstream_env(postgres_endpoint), "BASTION_LOCKED_PASSWORD": configured},
        ) as proc:
            with psycopg.connect(proc.dsn(), autocommit=True) as witness:
                error = login_error(proc, ALICE, ALICE_PASSWORD, database="locked")
                refusal = psycopg_refusal(proc.dsn(dbname="locked"))
                assert error.sqlstate == "08006"
                assert 'target "locked"' in error.message
                assert 'target "locked"' in refusal
                for text in (str(error.fields), refusal, proc.log_text()):
                    assert configured not in text
                    assert upstream_password not in text
                # The refusal was logged (so the log was worth searching) and the server saw
                # the configured password fail (so Bastion did send it).
                assert any(
                    event.get("msg") == "upstream refused the connection"
                    and event.get("target") == "locked"
                    for event in proc.log_events()
                )
                assert "password authentication failed" in server.log_tail(200)
                assert_unharmed(proc, witness)
            assert proc.stop() == 0


# Malformed startup packets.


def _startup_packet(code: int, payload: bytes) -> bytes:
    return struct.pack("!II", len(payload) + 8, code) + payload


def _parameters(*pairs: tuple[bytes, bytes]) -> bytes:
    return b"".join(name + b"\x00" + value + b"\x00" for name, value in pairs) + b"\x00"


_USER = (b"user", ALICE.encode())
_DATABASE = (b"database", b"shop")
_TLS_CLIENT_HELLO = bytes.fromhex("16 03 01 02 00 01 00 01 fc 03 03") + bytes(32)

MALFORMED_STARTUP = [
    pytest.param(b"\x00\x00\x00\x04\x00\x03\x00\x00", "08P01", "length 4", id="length-4"),
    pytest.param(b"\x00\x00\x00\x00\x00\x00\x00\x00", "08P01", "length 0", id="length-0"),
    pytest.param(
        struct.pack("!II", MAX_STARTUP + 1, PROTOCOL_3_0) + _parameters(_USER),
        "08P01",
        f"exceeds the {MAX_STARTUP} limit",
        id="over-max-startup-packet",
    ),
    pytest.param(
        struct.pack("!II", 0x7FFFFFFF, PROTOCOL_3_0) + bytes(4096),
        "08P01",
        f"exceeds the {MAX_STARTUP} limit",
        id="giant-length",
    ),
    pytest.param(
        startup.encode_startup_message({"user": ALICE, "application_name": "x" * 1_000_000}),
        "08P01",
        f"exceeds the {MAX_STARTUP} limit",
        id="giant-startup-packet",
    ),
    pytest.param(
        _startup_packet(0x00020000, _parameters(_USER, _DATABASE)),
        "08P01",
        "unsupported frontend protocol 2.0",
        id="protocol-2.0",
    ),
    pytest.param(
        _startup_packet(0x00040000, _parameters(_USER, _DATABASE)),
        "08P01",
        "unsupported frontend protocol 4.0",
        id="protocol-4.0",
    ),
    pytest.param(
        _startup_packet(PROTOCOL_3_0, _parameters(_DATABASE)),
        "28000",
        "no user name specified",
        id="no-user",
    ),
    pytest.param(
        _startup_packet(
            PROTOCOL_3_0,
            _parameters(_USER, *((f"p{i}".encode(), b"v") for i in range(64))),
        ),
        "08P01",
        "more than 64 startup parameters",
        id="65-parameters",
    ),
    pytest.param(
        _startup_packet(PROTOCOL_3_0, _parameters(_USER, (b"application_name", b"\xff\xfe"))),
        "08P01",
        "must be UTF-8",
        id="non-utf8-value",
    ),
    pytest.param(
        _startup_packet(PROTOCOL_3_0, _parameters(_USER, (b"us\xc0r", b"x"))),
        "08P01",
        "must be UTF-8",
        id="non-utf8-name",
    ),
    pytest.param(
        _startup_packet(PROTOCOL_3_0, _parameters(_USER, (b"user", b"mallory"))),
        "08P01",
        "duplicate startup parameter",
        id="duplicate-user",
    ),
    pytest.param(
        _startup_packet(PROTOCOL_3_0, b"user\x00alice\x00database\x00shop\x00"),
        "08P01",
        "NUL-terminated",
        id="unterminated-parameter-list",
    ),
    pytest.param(
        _startup_packet(PROTOCOL_3_0, b"user\x00alice\x00database"),
        "08P01",
        "not NUL-terminated",
        id="truncated-parameter-name",
    ),
    pytest.param(
        _startup_packet(SSL_REQUEST_CODE, bytes(4)),
        "08P01",
        "malformed SSLRequest",
        id="ssl-request-with-a-body",
    ),
    pytest.param(
        _startup_packet(CANCEL_REQUEST_CODE, bytes(2)),
        "08P01",
        "malformed CancelRequest",
        id="short-cancel-request",
    ),
    pytest.param(
        frontend.encode_query("SELECT 1"), "08P01", "exceeds", id="query-instead-of-startup"
    ),
    pytest.param(b"GET / HTTP/1.1\r\nHost: bastion\r\n\r\n", "08P01", "exceeds", id="http-request"),
    pytest.param(_TLS_CLIENT_HELLO, "08P01", "exceeds", id="tls-without-sslrequest"),
    pytest.param(random.Random(15).randbytes(64), "08P01", "", id="random-garbage"),
]


@pytest.mark.parametrize(("packet", "sqlstate", "fragment"), MALFORMED_STARTUP)
def test_malformed_startup_packet_gets_an_error_then_close(
    bastion: BastionProcess, packet: bytes, sqlstate: str, fragment: str
) -> None:
    with raw(bastion) as conn:
        conn.send_quietly(packet)
        error = error_then_close(conn)
    assert error.sqlstate == sqlstate, error.fields
    assert fragment in error.message


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(b"\x00\x00\x00\x28\x00\x03\x00\x00user\x00al", id="truncated-body"),
        pytest.param(b"\x00\x00", id="truncated-length"),
        pytest.param(b"", id="nothing"),
    ],
)
def test_client_closing_mid_startup_packet_is_dropped_quietly(
    bastion: BastionProcess, sent: bytes
) -> None:
    with raw(bastion) as conn:
        conn.send(sent)
        conn.sock.shutdown(socket.SHUT_WR)
        assert conn.wait_closed(CLOSE_TIMEOUT)
        assert conn.buffered == 0, "Bastion answered a client that had already hung up"


def _tls_context(proc: BastionProcess) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(proc.ca_file))


@pytest.mark.parametrize(
    ("second", "expected"),
    [
        pytest.param(startup.encode_ssl_request(), "SSLRequest received twice", id="ssl-request"),
        pytest.param(
            startup.encode_gssenc_request(),
            "GSSENCRequest after TLS was established",
            id="gssenc-request",
        ),
    ],
)
def test_encryption_request_after_tls_is_refused(
    bastion: BastionProcess, second: bytes, expected: str
) -> None:
    with raw(bastion) as conn:
        conn.start_tls(_tls_context(bastion), "127.0.0.1")
        conn.send(second)
        error = error_then_close(conn)
    assert (error.sqlstate, error.message) == ("08P01", expected)


@pytest.mark.parametrize(
    "injected",
    [
        pytest.param(startup.encode_startup_message({"user": ALICE}), id="startup-message"),
        pytest.param(frontend.encode_query("SELECT 1"), id="query"),
        pytest.param(b"\x00", id="one-byte"),
    ],
)
def test_bytes_pipelined_after_ssl_request_are_refused(
    bastion: BastionProcess, injected: bytes
) -> None:
    """Bytes sent after SSLRequest but before the handshake could come from a man in the
    middle and must never be read as if they had been encrypted (CVE-2021-23214)."""
    with raw(bastion) as conn:
        conn.send(startup.encode_ssl_request() + injected)
        assert conn.peek_byte() == b"E", "Bastion agreed to TLS with plaintext still queued"
        error = error_then_close(conn)
    assert error.sqlstate == "08P01"
    assert "unencrypted data after SSLRequest" in error.message


def test_gssenc_request_is_declined_and_the_login_continues(bastion: BastionProcess) -> None:
    with raw(bastion) as conn:
        conn.send(startup.encode_gssenc_request())
        assert conn.read_byte() == b"N"
        conn.login(ALICE, ALICE_PASSWORD, database="shop")
        result = conn.query("SELECT 1")
        assert result.rows == 1
        assert result.tags == ["SELECT 1"]


def test_replication_connections_are_refused(bastion: BastionProcess) -> None:
    refusal = psycopg_refusal(bastion.dsn(replication="database"))
    assert "replication connections are not supported through Bastion" in refusal
    for mode in ("database", "true", "on"):
        with raw(bastion) as conn:
            conn.startup(user=ALICE, database="shop", replication=mode)
            error = error_then_close(conn)
        assert error.sqlstate == "0A000", error.fields
        assert error.message == "replication connections are not supported through Bastion"


# Broken or hostile authentication exchanges.

AUTH_VIOLATIONS = [
    pytest.param(
        frontend.encode_query("SELECT 1"),
        "08P01",
        "expected an authentication response, got message type 'Q'",
        id="query-instead-of-sasl",
    ),
    pytest.param(
        frontend.encode_password(ALICE_PASSWORD), "08P01", "truncated", id="cleartext-password"
    ),
    pytest.param(
        frontend.encode_sasl_initial("SCRAM-SHA-1", b"n,,n=,r=abc"),
        "28P01",
        "unsupported SASL mechanism",
        id="unknown-mechanism",
    ),
    pytest.param(
        frontend.encode_sasl_initial(SCRAM, b"p=tls-server-end-point,,n=,r=abc"),
        "28P01",
        "malformed SCRAM message",
        id="channel-binding-without-tls",
    ),
    pytest.param(
        frontend.encode_sasl_initial(SCRAM, b"n,a=postgres,n=,r=abc"),
        "28P01",
        "malformed SCRAM message",
        id="authzid",
    ),
    pytest.param(
        frontend.encode_sasl_initial(SCRAM, b"hello"),
        "28P01",
        "malformed SCRAM message",
        id="garbage-client-first",
    ),
    pytest.param(
        frontend.encode_sasl_initial(SCRAM, b"n,,n=,r=\xff"),
        "28P01",
        "malformed SCRAM message",
        id="non-utf8-client-first",
    ),
    pytest.param(
        frontend.encode_sasl_initial(SCRAM, b"n,,n=,r=" + b"a" * 5000),
        "28P01",
        "malformed SCRAM message",
        id="client-first-too-long",
    ),
    pytest.param(
        frame(ord("p"), cstr(SCRAM) + struct.pack("!i", -1)),
        "28P01",
        "malformed SCRAM message",
        id="client-first-without-data",
    ),
    pytest.param(
        frame(ord("p"), cstr(SCRAM) + struct.pack("!i", 100) + b"short"),
        "08P01",
        "truncated",
        id="sasl-length-beyond-message",
    ),
    pytest.param(
        b"p" + struct.pack("!I", 17 << 10),
        "08P01",
        "exceeds the 16384-byte limit",
        id="oversized-auth-message",
    ),
]


@pytest.mark.parametrize(("reply", "sqlstate", "fragment"), AUTH_VIOLATIONS)
def test_broken_answer_to_the_scram_challenge_is_refused(
    bastion: BastionProcess, reply: bytes, sqlstate: str, fragment: str
) -> None:
    with raw(bastion) as conn:
        conn.startup(user=ALICE, database="shop")
        assert conn.read_message().type == "R"
        conn.send_quietly(reply)
        error = error_then_close(conn)
    assert error.sqlstate == sqlstate, error.fields
    assert fragment in error.message
    assert ALICE_PASSWORD not in bastion.log_text()


def _scram_until_final(conn: RawConnection, client_first: str) -> str:
    """Send client-first; return the server-first the server answers with."""
    conn.startup(user=ALICE, database="shop")
    assert conn.read_message().type == "R"
    conn.send(frontend.encode_sasl_initial(SCRAM, client_first.encode()))
    message = conn.read_message()
    assert message.type == "R"
    return message.body[4:].decode()


def test_replayed_or_forged_scram_proofs_are_refused(bastion: BastionProcess) -> None:
    client = ScramClient([SCRAM], ALICE, ALICE_PASSWORD)
    first = client.get_client_first()
    with raw(bastion) as conn:
        client.set_server_first(_scram_until_final(conn, first))
        final = client.get_client_final()
        conn.send(frontend.encode_sasl_response(final.encode()))
        assert conn.read_message().type == "R"  # SASLFinal: this proof was good once
        assert conn.read_message().type == "R"  # AuthenticationOk
    # The same client-first and client-final again: the server's nonce differs this time.
    with raw(bastion) as conn:
        _scram_until_final(conn, first)
        conn.send(frontend.encode_sasl_response(final.encode()))
        error = error_then_close(conn)
    assert error.sqlstate == "28P01"
    # A well-formed final message whose proof is wrong is just a wrong password.
    client = ScramClient([SCRAM], ALICE, ALICE_PASSWORD)
    with raw(bastion) as conn:
        client.set_server_first(_scram_until_final(conn, client.get_client_first()))
        without_proof, _, proof = client.get_client_final().rpartition(",p=")
        forged = base64.b64encode(bytes(len(base64.b64decode(proof)))).decode()
        conn.send(frontend.encode_sasl_response(f"{without_proof},p={forged}".encode()))
        error = error_then_close(conn)
    assert (error.sqlstate, error.message) == (
        "28P01",
        'password authentication failed for user "alice"',
    )
    # A second client-first where the final message belongs.
    with raw(bastion) as conn:
        _scram_until_final(conn, first)
        conn.send(frontend.encode_sasl_initial(SCRAM, first.encode()))
        error = error_then_close(conn)
    assert error.sqlstate in ("08P01", "28P01"), error.fields


# Clients that vanish half-way.


@pytest.mark.parametrize(
    "vanish_after",
    [
        pytest.param("client-final"),
        pytest.param("ready-for-query"),
    ],
)
def test_client_vanishing_after_authentication_leaks_nothing(
    tmp_path: Path,
    postgres_endpoint: PostgresEndpoint,
    shop_db: tuple[str, SampleSummary],
    direct_dsn: str,
    vanish_after: str,
) -> None:
    """A client that hangs up while Bastion is still connecting it upstream must not leave a
    server backend or a connection slot behind: with room for three clients, a session and two
    vanished ones must leave room for the next."""
    with running_shop_bastion(
        tmp_path,
        postgres_endpoint,
        shop_db,
        extra={"limits": {"max_client_connections": 3}},
    ) as proc:
        with psycopg.connect(proc.dsn(), autocommit=True) as witness:
            name = f"bastion-vanish-{uuid.uuid4().hex[:12]}"
            for _ in range(2):
                with raw(proc) as conn:
                    if vanish_after == "client-final":
                        # Hang up as soon as the proof is sent, before the verdict comes back.
                        conn.send_scram_proof(
                            ALICE, ALICE_PASSWORD, database="shop", application_name=name
                        )
                    else:
                        conn.login(ALICE, ALICE_PASSWORD, database="shop", application_name=name)
            deadline = time.monotonic() + CLOSE_TIMEOUT
            while _backends(direct_dsn, name) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _backends(direct_dsn, name) == 0, "server backends outlived their clients"
            assert_unharmed(proc, witness)
        assert proc.stop() == 0


# Protocol violations after a successful login.

RELAY_VIOLATIONS = [
    pytest.param(frame(ord("y"), b"junk"), "unexpected message type 'y'", id="unknown-type"),
    pytest.param(frame(0x01), "unexpected message type", id="control-byte-type"),
    pytest.param(b"Q" + struct.pack("!I", 3), "invalid message length 3", id="length-3"),
    pytest.param(b"Q" + struct.pack("!I", 0), "invalid message length 0", id="length-0"),
    pytest.param(
        b"Q" + struct.pack("!I", MAX_MESSAGE + 1),
        f"exceeds the {MAX_MESSAGE}-byte limit",
        id="query-over-max-message",
    ),
    pytest.param(
        b"P" + struct.pack("!I", 0xFFFFFFFF),
        f"exceeds the {MAX_MESSAGE}-byte limit",
        id="parse-4gb",
    ),
    pytest.param(
        frontend.encode_password(ALICE_PASSWORD),
        "unexpected message type 'p'",
        id="password-message",
    ),
    pytest.param(frame(ord("B"), b"\x00\x00\x00"), "invalid 'B' message", id="truncated-bind"),
    pytest.param(
        frame(ord("B"), b"\x00\x00\x00\x00\x00\x05"), "invalid 'B' message", id="bind-5-params"
    ),
    pytest.param(frame(ord("Q"), b"SELECT 1"), "invalid 'Q' message", id="unterminated-query"),
    pytest.param(
        frame(ord("P"), b"s\x00SELECT \xff\x00\x00\x00"), "invalid 'P' message", id="parse-utf8"
    ),
    pytest.param(frame(ord("E"), b"\x00\x00"), "invalid 'E' message", id="truncated-execute"),
    pytest.param(
        b"d" + struct.pack("!I", MAX_MESSAGE + 1),
        f"exceeds the {MAX_MESSAGE}-byte limit",
        id="copy-data-over-max-message",
    ),
]


def _backends(direct_dsn: str, application_name: str) -> int:
    with psycopg.connect(direct_dsn, autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize(("attack", "fragment"), RELAY_VIOLATIONS)
def test_relay_phase_violation_closes_the_session_and_its_backend(
    bastion: BastionProcess, direct_dsn: str, attack: bytes, fragment: str
) -> None:
    """After a valid login, a message Bastion cannot frame or decode ends the session with a
    protocol error, and the server-side backend of that session goes away with it."""
    name = f"bastion-attack-{uuid.uuid4().hex[:12]}"
    with raw(bastion) as conn:
        conn.login(ALICE, ALICE_PASSWORD, database="shop", application_name=name)
        assert _backends(direct_dsn, name) == 1
        conn.send(attack)
        error = error_then_close(conn, timeout=3)
    assert error.sqlstate == "08P01", error.fields
    assert fragment in error.message
    assert ALICE_PASSWORD not in bastion.log_text()
    deadline = time.monotonic() + CLOSE_TIMEOUT
    while _backends(direct_dsn, name) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _backends(direct_dsn, name) == 0, "the server-side backend outlived the session"


# Slow clients.


@pytest.fixture(scope="module")
def impatient(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_endpoint: PostgresEndpoint,
    shop_db: tuple[str, SampleSummary],
) -> Iterator[tuple[BastionProcess, psycopg.Connection]]:
    """A Bastion that gives clients one second to log in, and a session opened before."""
    with running_shop_bastion(
        tmp_path_factory.mktemp("bastion-impatient"),
        postgres_endpoint,
        shop_db,
        extra={"limits": {"startup_timeout_seconds": 1}},
    ) as proc:
        with psycopg.connect(proc.dsn(), autocommit=True) as witness:
            yield proc, witness
        assert proc.stop() == 0


def _silent(conn: RawConnection) -> None:
    pass


def _trickle_startup(conn: RawConnection) -> None:
    packet = startup.encode_startup_message({"user": ALICE, "database": "shop"})
    for i in range(len(packet)):
        if not conn.send_quietly(packet[i : i + 1]) or conn.wait_closed(0.2):
            return


def _stall_in_scram(conn: RawConnection) -> None:
    conn.startup(user=ALICE, database="shop")
    assert conn.read_message().type == "R"


def _stall_in_tls_handshake(conn: RawConnection) -> None:
    conn.send(startup.encode_ssl_request())
    assert conn.read_byte() == b"S"


@pytest.mark.parametrize(
    ("behaviour", "told"),
    [
        pytest.param(_silent, True, id="silent"),
        pytest.param(_trickle_startup, True, id="one-byte-every-200ms"),
        pytest.param(_stall_in_scram, True, id="stalls-mid-scram"),
        pytest.param(_stall_in_tls_handshake, False, id="stalls-in-tls-handshake"),
    ],
)
def test_slow_clients_are_cut_off_at_the_startup_deadline(
    impatient: tuple[BastionProcess, psycopg.Connection],
    behaviour: Callable[[RawConnection], None],
    told: bool,
) -> None:
    proc, witness = impatient
    started = time.monotonic()
    with raw(proc) as conn:
        behaviour(conn)
        assert conn.wait_closed(CLOSE_TIMEOUT), "a slow client kept its connection"
        elapsed = time.monotonic() - started
        if told:  # before TLS is up, the client can be told why
            error = conn.read_error(timeout=0)
            assert (error.sqlstate, error.message) == ("08006", "startup timed out")
    assert 0.9 <= elapsed < 3.0, elapsed
    assert_unharmed(proc, witness)


# Bad configuration.


def test_bad_config_exits_2_naming_the_key_and_hiding_the_secret(tmp_path: Path) -> None:
    inline = "Inline-Secret-" + uuid.uuid4().hex
    misspelled = "Misspelled-Secret-" + uuid.uuid4().hex
    config = {
        "listeners": {"postgres": [{"host": "127.0.0.1", "port": free_port()}]},
        "targets": [
            {
                "name": "shop",
                "host": "127.0.0.1",
                "database": "shop",
                "credentials": {
                    "default": {"user": "postgres", "password": inline},
                    "readonly": {"user": "reader", "pasword": misspelled},
                },
            }
        ],
    }
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [
            sys.executable,
            *("-m", "bastion.cli.main", "serve"),
            *("--config", str(path), "--data-dir", str(tmp_path / "data")),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "targets[0].credentials.readonly.pasword: unknown key" in result.stderr
    assert "targets[0].credentials.default.password: inline secrets are not allowed" in (
        result.stderr
    )
    assert inline not in output
    assert misspelled not in output

"""ScramServer against real PostgreSQL drivers (psycopg/libpq and asyncpg) over a real socket."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import psycopg
import pytest

from bastion.identity.scram import ScramServer, make_verifier

from .pg_auth_server import Outcome, TinyPgAuthServer

FAKE_SECRET = b"f" * 32
PASSWORDS = {
    "alice": "correct horse battery staple",
    # SASLprep maps the soft hyphen to nothing; clients do the same before hashing.
    "bob": "pass\u00adword",
    # A private-use character makes SASLprep fail: everyone then uses the raw password.
    "carol": "p\ue000ss",
}
VERIFIERS = {
    "alice": make_verifier(PASSWORDS["alice"]),
    "bob": make_verifier("password"),
    "carol": make_verifier(PASSWORDS["carol"]),
}


@pytest.fixture
def server() -> Iterator[TinyPgAuthServer]:
    def make_scram(user: str) -> ScramServer:
        return ScramServer(user, VERIFIERS.get(user), FAKE_SECRET)

    with TinyPgAuthServer(make_scram) as running:
        yield running
    assert running.errors == []


def psycopg_connect(server: TinyPgAuthServer, user: str, password: str) -> None:
    conn = psycopg.connect(
        host="127.0.0.1",
        port=server.port,
        user=user,
        password=password,
        dbname="app",
        sslmode="disable",
        gssencmode="disable",
        connect_timeout=10,
    )
    conn.close()


async def asyncpg_connect(server: TinyPgAuthServer, user: str, password: str) -> None:
    conn = await asyncpg.connect(
        host="127.0.0.1",
        port=server.port,
        user=user,
        password=password,
        database="app",
        ssl=False,
        timeout=10,
    )
    await conn.close()


@pytest.mark.parametrize("user", sorted(PASSWORDS))
def test_psycopg_authenticates_with_the_right_password(server: TinyPgAuthServer, user: str) -> None:
    psycopg_connect(server, user, PASSWORDS[user])
    assert server.outcomes == [Outcome(user, True)]
    # libpq sends an empty SCRAM user name; the startup user is what counts.
    assert server.client_first_messages[0].startswith(b"n,,n=,r=")


@pytest.mark.parametrize(
    ("user", "password", "reason"),
    [
        ("alice", "wrong", "wrong password"),
        ("alice", PASSWORDS["alice"] + " ", "wrong password"),
        ("mallory", "anything", "unknown user"),
    ],
)
def test_psycopg_gets_the_same_28p01_for_wrong_password_and_unknown_user(
    server: TinyPgAuthServer, user: str, password: str, reason: str
) -> None:
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg_connect(server, user, password)
    assert f'password authentication failed for user "{user}"' in str(caught.value)
    assert server.outcomes == [Outcome(user, False, reason)]


@pytest.mark.parametrize("user", sorted(PASSWORDS))
def test_asyncpg_authenticates_with_the_right_password(server: TinyPgAuthServer, user: str) -> None:
    asyncio.run(asyncpg_connect(server, user, PASSWORDS[user]))
    assert server.outcomes == [Outcome(user, True)]
    # asyncpg, unlike libpq, puts the user name in its client-first-message.
    assert server.client_first_messages[0].startswith(f"n,,n={user},r=".encode())


@pytest.mark.parametrize(
    ("user", "password", "reason"),
    [("alice", "wrong", "wrong password"), ("mallory", "anything", "unknown user")],
)
def test_asyncpg_gets_invalid_password_for_wrong_password_and_unknown_user(
    server: TinyPgAuthServer, user: str, password: str, reason: str
) -> None:
    with pytest.raises(asyncpg.InvalidPasswordError) as caught:
        asyncio.run(asyncpg_connect(server, user, password))
    assert caught.value.sqlstate == "28P01"
    assert str(caught.value) == f'password authentication failed for user "{user}"'
    assert server.outcomes == [Outcome(user, False, reason)]


def test_psycopg_refuses_channel_binding_when_only_plain_scram_is_offered(
    server: TinyPgAuthServer,
) -> None:
    # channel_binding=require makes libpq give up before sending anything: Bastion must not
    # advertise SCRAM-SHA-256-PLUS it cannot honour.
    with pytest.raises(psycopg.OperationalError, match="channel binding"):
        psycopg.connect(
            host="127.0.0.1",
            port=server.port,
            user="alice",
            password=PASSWORDS["alice"],
            sslmode="disable",
            gssencmode="disable",
            channel_binding="require",
            connect_timeout=10,
        ).close()
    assert server.outcomes == []

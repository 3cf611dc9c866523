"""Logging in with an OIDC token as the password, through a real Bastion, with real clients.

A client asks for token authentication with `-c bastion.auth=token` in its startup options and
sends the JWT as a cleartext password, which Bastion accepts only over TLS or from loopback.
Every bad token gets the one message a wrong password gets; Bastion's log says why, and never
holds a token.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import psycopg
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from psycopg.conninfo import make_conninfo

from bastion.demo.sample import SampleSummary
from identity.tokens import (
    AUDIENCE,
    ISSUER,
    SigningKeyPair,
    b64url,
    claims,
    hand_made,
    jwks,
    write_jwks,
)
from support.bastion import BastionProcess, free_port
from support.servers import PostgresEndpoint

from .conftest import running_shop_bastion

ISSUER_NAME = "corp"
KID = "corp-2024"
TOKEN_USER = "dana"
GROUPS = ["db-readers", "oncall"]
TOKEN_OPTION = "-c bastion.auth=token"
WAIT_SECONDS = 10.0


@dataclass
class TokenBastion:
    bastion: BastionProcess
    key: SigningKeyPair
    upstream_role: str
    outside: tuple[str, int] | None  # a non-loopback address and port, when the machine has one

    def token(self, **overrides: Any) -> str:
        return self.key.mint(_claims(**overrides))


def _claims(**overrides: Any) -> dict[str, Any]:
    return claims(**{"preferred_username": TOKEN_USER, "groups": GROUPS, **overrides})


def _rsa_key(kid: str) -> SigningKeyPair:
    return SigningKeyPair(
        kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )


@pytest.fixture(scope="module")
def token_bastion(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_endpoint: PostgresEndpoint,
    shop_db: tuple[str, SampleSummary],
) -> Iterator[TokenBastion]:
    workdir = tmp_path_factory.mktemp("token-bastion")
    key = _rsa_key(KID)
    jwks_file = write_jwks(workdir / "jwks.json", jwks(key))
    port = free_port()
    listeners: list[dict[str, Any]] = [{"host": "127.0.0.1", "port": port, "tls": "auto"}]
    # A second loopback listener that does not trust loopback stands in for remote clients.
    outside = ("127.0.0.1", free_port())
    listeners.append(
        {"host": outside[0], "port": outside[1], "tls": "auto", "trust_loopback": False}
    )
    issuer = {
        "name": ISSUER_NAME,
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "jwks_file": str(jwks_file),
    }
    with running_shop_bastion(
        workdir,
        postgres_endpoint,
        shop_db,
        port=port,
        extra={
            "listeners": {"postgres": listeners},
            "identities": {"oidc": [issuer]},
            # Every rejection below counts as a failure; the rate limit has its own tests.
            "limits": {"auth_failures_per_minute": 1000},
        },
    ) as proc:
        yield TokenBastion(proc, key, postgres_endpoint.superuser, outside)


def _token_dsn(bastion: BastionProcess, user: str, token: str, **params: Any) -> str:
    return bastion.dsn(user, password=token, options=TOKEN_OPTION, **params)


def _refusal(port: int, *, host: str = "127.0.0.1", **kwargs: Any) -> asyncpg.PostgresError:
    """The error Bastion answers a login with, as asyncpg reports it."""

    async def attempt() -> asyncpg.PostgresError:
        try:
            conn = await asyncpg.connect(host=host, port=port, database="shop", **kwargs)
        except asyncpg.PostgresError as error:
            return error
        await conn.close()
        raise AssertionError("Bastion accepted the login")

    return asyncio.run(attempt())


def _token_refusal(bastion: BastionProcess, user: str, token: str) -> asyncpg.PostgresError:
    return _refusal(
        bastion.port,
        user=user,
        password=token,
        ssl=False,
        server_settings={"options": TOKEN_OPTION},
    )


def _wait_for(
    bastion: BastionProcess, predicate: Callable[[dict[str, Any]], bool], after: int = 0
) -> dict[str, Any]:
    """The newest log event past index `after` that satisfies `predicate`."""
    # Bastion writes its audit line once the client has its answer, so allow it a moment.
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        found = [event for event in bastion.log_events()[after:] if predicate(event)]
        if found:
            return found[-1]
        assert time.monotonic() < deadline, f"no such log event:\n{bastion.log_text()[-3000:]}"
        time.sleep(0.05)


def _assert_not_logged(bastion: BastionProcess, token: str) -> None:
    """Neither the token nor any 20-character piece of it is in Bastion's log."""
    log = bastion.log_text()
    assert token not in log
    for start in range(0, max(len(token) - 20, 0) + 1, 10):
        assert token[start : start + 20] not in log


def _assert_token_login_audited(
    token_bastion: TokenBastion, application_name: str, *, tls: bool
) -> None:
    event = _wait_for(
        token_bastion.bastion,
        lambda e: e.get("event") == "connect" and e.get("application_name") == application_name,
    )
    assert event["user"] == TOKEN_USER
    assert event["auth_method"] == f"oidc:{ISSUER_NAME}"
    assert event["groups"] == GROUPS
    assert event["identity_kind"] == "human"
    assert event["upstream_role"] == token_bastion.upstream_role
    assert ("tls_version" in event) is tls


# Accepted tokens.


@pytest.mark.parametrize("sslmode", ["require", "disable"])
def test_psycopg_logs_in_with_a_token(token_bastion: TokenBastion, sslmode: str) -> None:
    bastion, token = token_bastion.bastion, token_bastion.token()
    name = f"psycopg-token-{sslmode}"
    dsn = _token_dsn(bastion, TOKEN_USER, token, sslmode=sslmode, application_name=name)
    with psycopg.connect(dsn) as conn:
        assert conn.pgconn.ssl_in_use is (sslmode == "require")
        assert conn.execute("SELECT current_user").fetchone() == (token_bastion.upstream_role,)
        # bastion.auth is Bastion's own: forwarded, the server would keep it as a custom setting.
        assert conn.execute("SELECT current_setting('bastion.auth', true)").fetchone() == (None,)
    _assert_token_login_audited(token_bastion, name, tls=sslmode == "require")
    _assert_not_logged(bastion, token)


@pytest.mark.parametrize("sslmode", ["require", "disable"])
def test_psql_logs_in_with_a_token(token_bastion: TokenBastion, sslmode: str) -> None:
    bastion, token = token_bastion.bastion, token_bastion.token()
    name = f"psql-token-{sslmode}"
    dsn = make_conninfo(
        "",
        host="127.0.0.1",
        port=bastion.port,
        dbname="shop",
        user=TOKEN_USER,
        options=TOKEN_OPTION,
        sslmode=sslmode,
        application_name=name,
    )
    # The token goes in the environment, where other users of the machine cannot list it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"PGPASSWORD": token}
    result = subprocess.run(
        ["psql", dsn, "-X", "-A", "-t", "-c", "SELECT current_user"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == token_bastion.upstream_role
    _assert_token_login_audited(token_bastion, name, tls=sslmode == "require")
    _assert_not_logged(bastion, token)


# Rejected tokens: each gets the same message, and the log says why.


def _other_key_token(kid: str) -> str:
    return _rsa_key(kid).mint(_claims())


def _alg_none_token() -> str:
    return hand_made({"alg": "none", "typ": "JWT", "kid": KID}, _claims())


def _hs256_with_public_key_token(key: SigningKeyPair) -> str:
    # The classic confusion attack: an HMAC keyed with the issuer's (public) RSA key.
    public_pem = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    unsigned = hand_made({"alg": "HS256", "typ": "JWT", "kid": KID}, _claims()).rsplit(".", 1)[0]
    signature = hmac.new(public_pem, unsigned.encode(), hashlib.sha256).digest()
    return f"{unsigned}.{b64url(signature)}"


def _tampered_token(key: SigningKeyPair) -> str:
    # A genuine signature over other claims: promote oneself to an administrators' group.
    header, _, signature = key.mint(_claims()).split(".")
    payload = json.dumps(_claims(groups=["db-admins"])).encode()
    return f"{header}.{b64url(payload)}.{signature}"


REJECTED: dict[str, tuple[str, Callable[[TokenBastion], str], str]] = {
    # case: (startup user, token, the reason Bastion logs)
    "expired": (
        TOKEN_USER,
        lambda tb: tb.token(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600),
        "token expired",
    ),
    "not-yet-valid": (
        TOKEN_USER,
        lambda tb: tb.token(nbf=int(time.time()) + 3600),
        "token not yet valid",
    ),
    "without-exp": (TOKEN_USER, lambda tb: tb.token(exp=None), "missing claim 'exp'"),
    "wrong-audience": (TOKEN_USER, lambda tb: tb.token(aud="another-service"), "audience mismatch"),
    "wrong-issuer": (
        TOKEN_USER,
        lambda tb: tb.token(iss="https://idp.attacker.example/"),
        "unknown issuer",
    ),
    "other-key-same-kid": (TOKEN_USER, lambda tb: _other_key_token(KID), "signature invalid"),
    "other-key-new-kid": (TOKEN_USER, lambda tb: _other_key_token("rogue"), "unknown key id"),
    "alg-none": (TOKEN_USER, lambda tb: _alg_none_token(), "algorithm not allowed"),
    "hs256-public-key": (
        TOKEN_USER,
        lambda tb: _hs256_with_public_key_token(tb.key),
        "algorithm not allowed",
    ),
    "tampered-claims": (TOKEN_USER, lambda tb: _tampered_token(tb.key), "signature invalid"),
    "username-mismatch": ("erin", lambda tb: tb.token(), "username mismatch"),
    "not-a-jwt": (TOKEN_USER, lambda tb: "not-a-token-at-all-0123456789", "malformed token"),
}


@pytest.mark.parametrize("case", list(REJECTED))
def test_rejected_token_is_28P01_with_the_password_message(
    token_bastion: TokenBastion, case: str
) -> None:
    bastion = token_bastion.bastion
    user, make_token, reason = REJECTED[case]
    token = make_token(token_bastion)
    expected = f'password authentication failed for user "{user}"'

    def rejected(event: dict[str, Any]) -> bool:
        return event.get("event") == "reject" and event.get("user") == user

    seen = len(bastion.log_events())
    error = _token_refusal(bastion, user, token)
    assert (error.sqlstate, error.message) == ("28P01", expected)
    assert _wait_for(bastion, rejected, seen)["reason"] == reason
    seen = len(bastion.log_events())
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(_token_dsn(bastion, user, token))
    assert expected in str(info.value)
    assert token not in str(info.value)
    assert _wait_for(bastion, rejected, seen)["reason"] == reason
    _assert_not_logged(bastion, token)


def test_password_presented_as_a_token_is_refused(token_bastion: TokenBastion) -> None:
    bastion = token_bastion.bastion
    password = next(user.password for user in bastion.users if user.name == "alice")
    seen = len(bastion.log_events())
    error = _token_refusal(bastion, "alice", password)
    assert (error.sqlstate, error.message) == (
        "28P01",
        'password authentication failed for user "alice"',
    )
    event = _wait_for(bastion, lambda e: e.get("event") == "reject", seen)
    assert (event["user"], event["reason"]) == ("alice", "malformed token")
    assert password not in bastion.log_text()
    # The same password over SCRAM still works: the refusal was about the method.
    with psycopg.connect(bastion.dsn("alice", password)) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_token_is_not_a_scram_password(token_bastion: TokenBastion) -> None:
    bastion, token = token_bastion.bastion, token_bastion.token()
    error = _refusal(bastion.port, user=TOKEN_USER, password=token, ssl=False)
    assert (error.sqlstate, error.message) == (
        "28P01",
        f'password authentication failed for user "{TOKEN_USER}"',
    )
    _assert_not_logged(bastion, token)


def test_unknown_bastion_auth_method_is_refused(token_bastion: TokenBastion) -> None:
    bastion, token = token_bastion.bastion, token_bastion.token()
    error = _refusal(
        bastion.port,
        user=TOKEN_USER,
        password=token,
        ssl=False,
        server_settings={"options": "-c bastion.auth=bogus"},
    )
    assert error.sqlstate == "28000"
    assert error.message == "unknown authentication method bastion.auth=bogus"
    assert error.hint is not None and "bastion.auth=token" in error.hint
    with pytest.raises(psycopg.OperationalError, match=r"bastion\.auth=bogus"):
        psycopg.connect(bastion.dsn(TOKEN_USER, password=token, options="-c bastion.auth=bogus"))
    _assert_not_logged(bastion, token)


def test_token_over_plaintext_from_an_untrusted_client_is_refused(
    token_bastion: TokenBastion,
) -> None:
    assert token_bastion.outside is not None
    bastion, token = token_bastion.bastion, token_bastion.token()
    host, port = token_bastion.outside
    error = _refusal(
        port,
        host=host,
        user=TOKEN_USER,
        password=token,
        ssl=False,
        server_settings={"options": TOKEN_OPTION},
    )
    assert error.sqlstate == "28000"
    assert error.message == "token authentication requires TLS"
    outside = make_conninfo(_token_dsn(bastion, TOKEN_USER, token), host=host, port=port)
    with psycopg.connect(make_conninfo(outside, sslmode="require")) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("SELECT current_user").fetchone() == (token_bastion.upstream_role,)
    _assert_not_logged(bastion, token)

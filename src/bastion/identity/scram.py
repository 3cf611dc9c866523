"""SCRAM-SHA-256 for password users: verifiers and the server side of the SASL exchange.

This module owns the PostgreSQL-format verifier (`SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:
<ServerKey>`) and a sans-IO `ScramServer` that turns the client's SASL messages into the
server's replies (RFC 5802 / RFC 7677, as PostgreSQL speaks them). The cryptography is scramp's;
this module adds what PostgreSQL does differently: the SCRAM user name is ignored in favour of
the startup user, passwords that SASLprep rejects are used as they are, and unknown users run
the whole exchange against a fake verifier so that nothing tells them apart from real ones until
the final, uniform failure. It never touches sockets and never sees a password on the server
side.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import Enum
from typing import NoReturn

from scramp import ScramException, ScramMechanism
from scramp import utils as scramp_utils

from bastion.errors import AuthenticationFailed
from bastion.identity.records import SCRAM_VERIFIER_RE

MECHANISM = "SCRAM-SHA-256"
DEFAULT_ITERATIONS = 4096
# PostgreSQL's own salt length; fake verifiers use the same so they look like real ones.
SALT_LENGTH = 16
MAX_SASL_MESSAGE = 4096

_HASH = hashlib.sha256
# gs2-header "n,," or "y,," (no authzid), then n=<ignored user name>,r=<nonce>...
_CLIENT_FIRST_RE = re.compile(r"^(?P<gs2>[ny],,)n=(?P<user>[^,]*)(?P<rest>,r=.*)$", re.DOTALL)
# scramp refuses empty attribute values, and libpq sends "n=" empty; scramp only ever sees
# this placeholder, and the proof is checked over the client's own bytes (handle_client_first).
_PLACEHOLDER_USER = "bastion"


class CredentialsRejected(AuthenticationFailed):
    """A failed proof of identity: one message for the client, a precise `reason` for logs.

    Shared by every way of proving who one is (SCRAM, OIDC tokens). The client-facing message is
    deliberately identical for unknown users and wrong credentials; `reason` says what really
    happened and never contains a password, token or key.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, reason={self.reason!r})"


def credentials_failed(username: str, reason: str) -> CredentialsRejected:
    """The uniform failure for a user, whatever went wrong with their credentials."""
    return CredentialsRejected(
        f'password authentication failed for user "{username}"', reason=reason
    )


def _malformed(reason: str) -> CredentialsRejected:
    return CredentialsRejected("malformed SCRAM message", reason=reason)


@dataclass(frozen=True, slots=True)
class ScramKeys:
    """The parsed parts of a verifier. `repr` leaves the keys out."""

    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes

    def __repr__(self) -> str:
        return f"ScramKeys(iterations={self.iterations}, salt=<{len(self.salt)} bytes>)"

    def to_verifier(self) -> str:
        def b64(raw: bytes) -> str:
            return base64.b64encode(raw).decode("ascii")

        return (
            f"{MECHANISM}${self.iterations}:{b64(self.salt)}"
            f"${b64(self.stored_key)}:{b64(self.server_key)}"
        )


def parse_verifier(verifier: str) -> ScramKeys:
    """Split a PostgreSQL-format verifier; ValueError (without its text) when it is not one."""
    match = SCRAM_VERIFIER_RE.match(verifier)
    if match is None:
        raise ValueError("not a SCRAM-SHA-256 verifier")
    try:
        salt = base64.b64decode(match["salt"], validate=True)
        stored_key = base64.b64decode(match["stored_key"], validate=True)
        server_key = base64.b64decode(match["server_key"], validate=True)
    except binascii.Error:
        raise ValueError("SCRAM verifier has invalid base64") from None
    iterations = int(match["iterations"])
    digest_size = _HASH().digest_size
    if len(stored_key) != digest_size or len(server_key) != digest_size:
        raise ValueError("SCRAM verifier keys must be 32 bytes")
    # scramp's own limits: salts of 12 bytes or more, 4096 to 10 million iterations.
    if len(salt) < 12:
        raise ValueError("SCRAM verifier salt must be at least 12 bytes")
    if not 4096 <= iterations <= 10_000_000:
        raise ValueError("SCRAM iteration count must be between 4096 and 10000000")
    return ScramKeys(iterations, salt, stored_key, server_key)


def _normalize_password(password: str) -> bytes:
    # PostgreSQL, libpq and asyncpg all apply SASLprep and fall back to the raw password when
    # SASLprep refuses it; verifiers must follow the same rule or such passwords never match.
    try:
        prepared: str = scramp_utils.saslprep(password)
    except ScramException:
        prepared = password
    return prepared.encode("utf-8")


def _derive_keys(password: str, salt: bytes, iterations: int) -> ScramKeys:
    salted: bytes = scramp_utils.hi(_HASH, _normalize_password(password), salt, iterations)
    client_key: bytes = scramp_utils.hmac(_HASH, salted, b"Client Key")
    stored_key: bytes = scramp_utils.h(_HASH, client_key)
    server_key: bytes = scramp_utils.hmac(_HASH, salted, b"Server Key")
    return ScramKeys(iterations, salt, stored_key, server_key)


def make_verifier(password: str, iterations: int = DEFAULT_ITERATIONS) -> str:
    """A new verifier for `password` with a random salt, in PostgreSQL's format."""
    if not password:
        raise ValueError("empty passwords are not allowed")
    if not 4096 <= iterations <= 10_000_000:
        raise ValueError("SCRAM iteration count must be between 4096 and 10000000")
    return _derive_keys(password, secrets.token_bytes(SALT_LENGTH), iterations).to_verifier()


def verify_password(verifier: str, password: str) -> bool:
    """Whether `password` matches `verifier`; the comparison takes constant time."""
    keys = parse_verifier(verifier)
    candidate = _derive_keys(password, keys.salt, keys.iterations)
    # Both keys are compared, with `&` rather than `and`, so the time does not say which failed.
    return hmac.compare_digest(candidate.stored_key, keys.stored_key) & hmac.compare_digest(
        candidate.server_key, keys.server_key
    )


def fake_keys(fake_secret: bytes, username: str, iterations: int = DEFAULT_ITERATIONS) -> ScramKeys:
    """Keys for a user who does not exist: stable per name, unguessable without the secret."""
    name = username.encode("utf-8", "surrogatepass")

    def derive(label: bytes, size: int) -> bytes:
        return hmac.new(fake_secret, label + b"\x00" + name, _HASH).digest()[:size]

    return ScramKeys(
        iterations=iterations,
        salt=derive(b"bastion-scram-salt", SALT_LENGTH),
        stored_key=derive(b"bastion-scram-stored-key", 32),
        server_key=derive(b"bastion-scram-server-key", 32),
    )


class _Stage(Enum):
    EXPECT_CLIENT_FIRST = "client-first"
    EXPECT_CLIENT_FINAL = "client-final"
    DONE = "done"
    FAILED = "failed"


class ScramServer:
    """One SCRAM-SHA-256 exchange for one startup user, without I/O.

    `verifier=None` means the user does not exist: the exchange then runs against a fake
    verifier derived from `fake_secret`, and fails only at the final step with the same error a
    wrong password gets. After `handle_client_final` returns, the client is authenticated.
    """

    mechanisms: tuple[str, ...] = (MECHANISM,)

    def __init__(
        self,
        username: str,
        verifier: str | None,
        fake_secret: bytes,
        *,
        fake_iterations: int = DEFAULT_ITERATIONS,
    ) -> None:
        if not fake_secret:
            raise ValueError("fake_secret must not be empty")
        self._username = username
        self._known = verifier is not None
        keys = (
            parse_verifier(verifier)
            if verifier is not None
            else fake_keys(fake_secret, username, fake_iterations)
        )
        auth_info = (keys.salt, keys.stored_key, keys.server_key, keys.iterations)

        def lookup(_scram_name: str) -> tuple[bytes, bytes, bytes, int]:
            # The SCRAM user name is ignored, as PostgreSQL does: the startup user decides.
            return auth_info

        self._exchange = ScramMechanism(MECHANISM).make_server(lookup)
        self._stage = _Stage.EXPECT_CLIENT_FIRST

    def __repr__(self) -> str:
        return f"ScramServer(username={self._username!r}, stage={self._stage.value!r})"

    @property
    def username(self) -> str:
        return self._username

    @property
    def authenticated(self) -> bool:
        return self._stage is _Stage.DONE

    def handle_client_first(self, mechanism: str, data: bytes) -> bytes:
        """Take the SASLInitialResponse; return the server-first-message."""
        self._expect(_Stage.EXPECT_CLIENT_FIRST)
        if mechanism != MECHANISM:
            self._stage = _Stage.FAILED
            raise CredentialsRejected(
                f"unsupported SASL mechanism; Bastion offers {MECHANISM}",
                reason="unsupported SASL mechanism",
            )
        text = self._decode(data, "client-first-message")
        if text.startswith("p="):
            self._fail_malformed("client requested channel binding, which is not offered")
        match = _CLIENT_FIRST_RE.match(text)
        if match is None:
            self._fail_malformed("malformed client-first-message")
        placeholder = f"{match['gs2']}n={_PLACEHOLDER_USER}{match['rest']}"
        try:
            self._exchange.set_client_first(placeholder)
            # The proof covers the client-first-message-bare exactly as the client sent it.
            self._exchange.client_first_bare = text[len(match["gs2"]) :]
            server_first: str = self._exchange.get_server_first()
        except (ScramException, ValueError):
            self._fail_malformed("malformed client-first-message")
        self._stage = _Stage.EXPECT_CLIENT_FINAL
        return server_first.encode("ascii")

    def handle_client_final(self, data: bytes) -> bytes:
        """Take the client-final-message; return the server-final-message, or raise."""
        self._expect(_Stage.EXPECT_CLIENT_FINAL)
        text = self._decode(data, "client-final-message")
        try:
            self._exchange.set_client_final(text)
            server_final: str = self._exchange.get_server_final()
        except ScramException as exc:
            self._stage = _Stage.FAILED
            # scramp marks a proof that does not match the verifier as "invalid-proof";
            # anything else (nonce, channel binding, syntax) is a malformed message.
            server_error = getattr(exc, "server_error", None)
            if getattr(server_error, "value", None) == "invalid-proof":
                reason = "wrong password" if self._known else "unknown user"
                raise credentials_failed(self._username, reason) from None
            raise _malformed("malformed client-final-message") from None
        except ValueError:
            self._fail_malformed("malformed client-final-message")
        if not self._known:
            # Unreachable without the fake secret; refused all the same.
            self._stage = _Stage.FAILED
            raise credentials_failed(self._username, "unknown user")
        self._stage = _Stage.DONE
        return server_final.encode("ascii")

    def _expect(self, stage: _Stage) -> None:
        if self._stage is not stage:
            self._fail_malformed(f"SCRAM message out of order (stage {self._stage.value})")

    def _decode(self, data: bytes, what: str) -> str:
        if len(data) > MAX_SASL_MESSAGE:
            self._fail_malformed(f"{what} too long")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            self._fail_malformed(f"{what} is not UTF-8")

    def _fail_malformed(self, reason: str) -> NoReturn:
        self._stage = _Stage.FAILED
        raise _malformed(reason) from None

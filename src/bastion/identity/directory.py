"""The identity directory: who may connect, and how each proves it.

`IdentityDirectory` is an immutable snapshot of the password users (from the configuration and
from the data dir's users file) and of the trusted OIDC issuers. It hands out a `ScramServer` for
any startup user name (unknown names get an indistinguishable fake exchange), routes a token to
the issuer named in it, and produces the `Identity` the rest of Bastion works with. It does not
choose between password and token authentication, rate-limit, or touch sockets.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import jwt

from bastion.errors import ConfigError
from bastion.identity.oidc import MAX_TOKEN_LENGTH, OidcVerifier
from bastion.identity.records import IdentityKind, OidcIssuer, UserRecord
from bastion.identity.scram import (
    DEFAULT_ITERATIONS,
    ScramServer,
    credentials_failed,
    fake_keys,
    parse_verifier,
    verify_password,
)
from bastion.identity.users_file import UsersFile

PASSWORD_AUTH_METHOD = "scram-sha-256"
MIN_FAKE_SECRET = 16
# A password longer than this is refused outright; nobody types one, and it bounds the work.
MAX_PASSWORD_LENGTH = 1024


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated principal, as policy, masking and audit see it."""

    name: str
    groups: tuple[str, ...]
    kind: IdentityKind
    auth_method: str


class IdentityDirectory:
    """Password users and token issuers, checked for clashes once, then read-only."""

    def __init__(
        self,
        users: Sequence[UserRecord],
        issuers: Sequence[OidcIssuer],
        fake_secret: bytes,
    ) -> None:
        if len(fake_secret) < MIN_FAKE_SECRET:
            raise ConfigError(f"the fake-SCRAM secret must be at least {MIN_FAKE_SECRET} bytes")
        self._fake_secret = fake_secret
        self._users: dict[str, UserRecord] = {}
        for user in users:
            if user.name in self._users:
                raise ConfigError(f"user {user.name!r} is defined more than once")
            try:
                parse_verifier(user.scram)
            except ValueError as exc:
                raise ConfigError(f"user {user.name!r}: invalid SCRAM verifier: {exc}") from None
            self._users[user.name] = user
        # Unknown users are shown the iteration count most real users have, so it cannot
        # single them out.
        iterations = Counter(parse_verifier(u.scram).iterations for u in self._users.values())
        self._fake_iterations = (
            iterations.most_common(1)[0][0] if iterations else DEFAULT_ITERATIONS
        )
        self._verifiers: dict[str, OidcVerifier] = {}
        names: set[str] = set()
        for issuer in issuers:
            if issuer.name in names:
                raise ConfigError(f"OIDC issuer name {issuer.name!r} is used more than once")
            if issuer.issuer in self._verifiers:
                raise ConfigError(f"OIDC issuer {issuer.issuer!r} is configured more than once")
            names.add(issuer.name)
            self._verifiers[issuer.issuer] = OidcVerifier(issuer)

    @classmethod
    def from_sources(
        cls,
        inline_users: Sequence[UserRecord],
        users_file: UsersFile,
        issuers: Sequence[OidcIssuer],
        fake_secret: bytes,
    ) -> IdentityDirectory:
        """Users from the configuration plus those of the users file; a name in both is an error."""
        inline_names = {user.name for user in inline_users}
        file_users = users_file.load()
        for user in file_users:
            if user.name in inline_names:
                raise ConfigError(
                    f"user {user.name!r} is defined both in the configuration and in "
                    f"{users_file.path}",
                    hint="remove one of them (bastion users remove NAME for the file)",
                )
        return cls([*inline_users, *file_users], issuers, fake_secret)

    def __repr__(self) -> str:
        return f"IdentityDirectory(users={len(self._users)}, issuers={len(self._verifiers)})"

    @property
    def user_names(self) -> tuple[str, ...]:
        return tuple(self._users)

    @property
    def has_token_issuers(self) -> bool:
        return bool(self._verifiers)

    def scram_server(self, username: str) -> ScramServer:
        """A SCRAM exchange for `username`; unknown names get a fake one that always fails."""
        user = self._users.get(username)
        return ScramServer(
            username,
            user.scram if user is not None else None,
            self._fake_secret,
            fake_iterations=self._fake_iterations,
        )

    def password_identity(self, username: str) -> Identity:
        """The identity of a password user whose SCRAM exchange has just succeeded."""
        user = self._users.get(username)
        if user is None:
            raise credentials_failed(username, "unknown user")
        return Identity(
            name=user.name, groups=user.groups, kind=user.kind, auth_method=PASSWORD_AUTH_METHOD
        )

    async def verify_token(self, username: str, token: str) -> Identity:
        """The identity a token proves for `username`, checked by the issuer it names."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise credentials_failed(username, "token too large")
        try:
            # Unverified on purpose: only to pick the issuer, whose verifier checks everything.
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise credentials_failed(username, "malformed token") from None
        issuer = claims.get("iss")
        verifier = self._verifiers.get(issuer) if isinstance(issuer, str) else None
        if verifier is None:
            raise credentials_failed(username, "unknown issuer")
        return await verifier.verify(token, username)

    # For the admin API, which authenticates people outside the SCRAM exchange.

    def groups_of(self, username: str) -> tuple[str, ...] | None:
        """The groups of password user `username`, or None when there is no such user."""
        user = self._users.get(username)
        return None if user is None else user.groups

    def check_password(self, username: str, password: str) -> bool:
        """Whether `password` is password user `username`'s password.

        CPU-bound (PBKDF2 over the verifier's iteration count): call it from a worker thread.
        An unknown user is checked against the same fake keys the SCRAM exchange uses, so the
        answer takes as long as for a real user and is just as negative.
        """
        if not password or len(password) > MAX_PASSWORD_LENGTH:
            return False
        user = self._users.get(username)
        if user is not None:
            return verify_password(user.scram, password)
        fake = fake_keys(self._fake_secret, username, self._fake_iterations)
        verify_password(fake.to_verifier(), password)
        return False

    async def token_identity(self, token: str) -> Identity:
        """The identity a token proves on its own, with the user name taken from the claim its
        issuer names (`username_claim`); CredentialsRejected when it proves nothing."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise credentials_failed("", "token too large")
        try:
            # Unverified on purpose: only to pick the issuer and the claimed name, both of
            # which the issuer's verifier then checks along with the signature.
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise credentials_failed("", "malformed token") from None
        issuer = claims.get("iss")
        verifier = self._verifiers.get(issuer) if isinstance(issuer, str) else None
        if verifier is None:
            raise credentials_failed("", "unknown issuer")
        username = claims.get(verifier.issuer.username_claim)
        if not isinstance(username, str) or not username:
            raise credentials_failed(
                "", f"username claim {verifier.issuer.username_claim!r} missing"
            )
        return await verifier.verify(token, username)

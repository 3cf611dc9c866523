"""Who is calling the admin API: bearer tokens in, an `Approver` (or nobody) out.

Two kinds of bearer token are accepted. Admin API tokens (`bst_...`) are random strings issued
by `login` or `bastion tokens create`; only their SHA-256 digest is stored, and each acts for a
password user who must still exist when it is used (groups are read from the identity directory
at that moment, so a removed user or group takes effect at once). OIDC JWTs from a configured
issuer are verified by that issuer's verifier, exactly as for database logins. Password logins
are rate-limited per user and per source address, and an unknown user costs the same work and
gets the same answer as a wrong password. This module never logs or returns a token, except the
one `login` has just issued.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

from bastion.approvals.errors import ApprovalError
from bastion.approvals.model import Approver, TokenRecord
from bastion.approvals.service import ApprovalService, token_digest, utc_now
from bastion.errors import TooManyAttempts
from bastion.identity.directory import IdentityDirectory
from bastion.identity.oidc import MAX_TOKEN_LENGTH
from bastion.identity.ratelimit import AuthRateLimiter
from bastion.identity.scram import CredentialsRejected

TOKEN_PREFIX = "bst_"
DEFAULT_LOGIN_TTL = timedelta(hours=12)
LOGIN_FAILURES_PER_MINUTE = 5
LOGIN_LABEL = "login"


class LoginFailed(ApprovalError):
    """Unknown user or wrong password: one message for both."""

    status = 401


class LoginThrottled(ApprovalError):
    status = 429


def new_token(
    user: str, *, label: str, now: datetime, ttl: timedelta | None
) -> tuple[str, TokenRecord]:
    """A fresh admin API token for `user` and the record to store (which holds only its
    digest); `ttl=None` means it never expires."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = TokenRecord(
        id="tok_" + secrets.token_hex(6),
        user=user,
        digest=token_digest(token),
        label=label,
        created_at=now,
        expires_at=None if ttl is None else now + ttl,
    )
    return token, record


def bearer_token(authorization_header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if not authorization_header:
        return None
    scheme, _, token = authorization_header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    return token


class ApiAuthenticator:
    """Turns the Authorization header of an admin API request into an `Approver`."""

    def __init__(
        self,
        service: ApprovalService,
        directory_source: Callable[[], IdentityDirectory],
        *,
        login_ttl: timedelta = DEFAULT_LOGIN_TTL,
        rate_limiter: AuthRateLimiter | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._service = service
        # A callable, not a directory: the directory is replaced when the configuration reloads.
        self._directory_source = directory_source
        self._login_ttl = login_ttl
        # `is None`, not `or`: an empty limiter has len() 0 and is falsy.
        self._limiter = (
            rate_limiter
            if rate_limiter is not None
            else AuthRateLimiter(max_failures=LOGIN_FAILURES_PER_MINUTE)
        )
        self._clock = clock
        self._in_flight = _KeyedLocks()

    async def authenticate(self, authorization_header: str | None) -> Approver | None:
        """The person a bearer token proves, or None for a missing, unknown, expired or revoked
        token. Raises StateStoreError when the token store cannot be read."""
        token = bearer_token(authorization_header)
        if token is None:
            return None
        directory = self._directory_source()
        if token.count(".") == 2:  # a JWS compact serialization: an OIDC token
            if not directory.has_token_issuers:
                return None
            try:
                identity = await directory.token_identity(token)
            except CredentialsRejected:
                return None
            return Approver(identity.name, identity.groups)
        record = await self._service.token(token)
        if record is None:
            return None
        groups = directory.groups_of(record.user)
        if groups is None:  # the user has been removed since the token was issued
            return None
        return Approver(record.user, groups)

    async def login(
        self, user: str, password: str, *, source_address: str = "unknown"
    ) -> tuple[str, TokenRecord]:
        """Check a password user's password and issue a token valid for `login_ttl`.

        Raises LoginThrottled while the user or the source address has too many recent
        failures, and LoginFailed for an unknown user or a wrong password alike.
        """
        # One guess at a time per source and per user: otherwise a burst of parallel guesses
        # would all pass the limiter before the first of them failed. Source first, then user,
        # always in that order, so two logins cannot wait for each other.
        async with (
            self._in_flight.hold(f"source:{source_address}"),
            self._in_flight.hold(f"user:{user}"),
        ):
            try:
                self._limiter.check(source_address, user)
            except TooManyAttempts:
                raise LoginThrottled(
                    "too many failed logins for this user or from this address; try again later"
                ) from None
            directory = self._directory_source()
            matches = await asyncio.to_thread(directory.check_password, user, password)
            if not matches:
                self._limiter.failure(source_address, user)
                raise LoginFailed("wrong user name or password")
            self._limiter.success(source_address, user)
        token, record = new_token(user, label=LOGIN_LABEL, now=self._clock(), ttl=self._login_ttl)
        await asyncio.to_thread(self._service.store.add_token, record)
        return token, record

    async def logout(self, authorization_header: str | None) -> bool:
        """Revoke the admin API token in the header; False when it is not a live one."""
        token = bearer_token(authorization_header)
        if token is None:
            return False
        record = await self._service.token(token)
        if record is None:
            return False
        return await asyncio.to_thread(self._service.store.revoke_token, record.id)


class _KeyedLocks:
    """One asyncio lock per key, kept only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, waiting = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, waiting + 1)
        try:
            async with lock:
                yield
        finally:
            lock, waiting = self._locks[key]
            if waiting == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, waiting - 1)

    def __len__(self) -> int:
        return len(self._locks)

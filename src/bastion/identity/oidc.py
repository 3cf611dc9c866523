"""OIDC tokens as passwords: verifying a JWT from one configured issuer.

`OidcVerifier` owns one issuer's signing keys (a JWKS file, reloaded when it changes, or a JWKS
URL fetched in a worker thread and cached) and the rules a token must pass: an asymmetric
algorithm the issuer allows, a valid signature, `exp` present and in the future, `nbf`/`iat` not
in the future, the exact issuer, the audience, and a user-name claim equal to the startup user.
Every failure is the same `password authentication failed` to the client, with a precise
`reason` for Bastion's logs; tokens themselves are never logged or echoed. Choosing the issuer
for a token is the identity directory's business.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPMessage
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import jwt

from bastion.errors import ConfigError
from bastion.identity.records import IdentityKind, OidcIssuer
from bastion.identity.scram import CredentialsRejected, credentials_failed

if TYPE_CHECKING:
    from bastion.identity.directory import Identity

logger = logging.getLogger(__name__)

JWKS_TTL_SECONDS = 300.0
# At most one JWKS fetch per this many seconds, whether for an unknown key id or after a failure.
JWKS_REFETCH_INTERVAL = 30.0
MAX_JWKS_BYTES = 1024 * 1024
MAX_TOKEN_LENGTH = 16 * 1024

_EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521", "ES256K": "secp256k1"}


def _key_type_for(alg: str) -> str | None:
    """The JWK `kty` an asymmetric JWS algorithm needs; None for anything else."""
    if alg[:2] in ("RS", "PS") and alg[2:] in ("256", "384", "512"):
        return "RSA"
    if alg in _EC_CURVES:
        return "EC"
    if alg in ("EdDSA", "Ed25519", "Ed448"):
        return "OKP"
    return None


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One usable public key from a JWKS."""

    kid: str | None
    kty: str
    alg: str | None
    crv: str | None
    public_key: Any

    def fits(self, alg: str) -> bool:
        if self.alg is not None and self.alg != alg:
            return False
        if self.kty != _key_type_for(alg):
            return False
        return self.kty != "EC" or self.crv == _EC_CURVES[alg]


def parse_jwks(document: Any) -> tuple[SigningKey, ...]:
    """The asymmetric signing keys of a JWKS document; symmetric and broken keys are skipped."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("a JWKS is a JSON object with a `keys` list")
    keys: list[SigningKey] = []
    for entry in document["keys"]:
        if not isinstance(entry, dict):
            continue
        kty, alg, kid, use = (entry.get(k) for k in ("kty", "alg", "kid", "use"))
        # Shared-secret ("oct") keys would let anyone holding them mint tokens: never used.
        if kty not in ("RSA", "EC", "OKP") or (use is not None and use != "sig"):
            continue
        if alg is not None and (not isinstance(alg, str) or _key_type_for(alg) != kty):
            continue
        if kid is not None and not isinstance(kid, str):
            continue
        try:
            public_key = jwt.PyJWK(entry).key
        except jwt.PyJWTError:
            continue
        crv = entry.get("crv")
        keys.append(SigningKey(kid, kty, alg, crv if isinstance(crv, str) else None, public_key))
    return tuple(keys)


def check_jwks_url(url: str) -> None:
    """Accept https URLs, and plain http only to a loopback address."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and _is_loopback(parts.hostname):
        return
    raise ValueError("JWKS URLs must use https (plain http is accepted only to a loopback address)")


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect must not lead from https to plain http or anywhere else check_jwks_url refuses.
    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        try:
            check_jwks_url(newurl)
        except ValueError as exc:
            raise urllib.error.URLError(f"refused redirect: {exc}") from None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch_jwks(url: str, timeout: float) -> tuple[SigningKey, ...]:
    """Download and parse a JWKS (blocking: run it in a worker thread)."""
    handlers: list[urllib.request.BaseHandler] = [_CheckedRedirects()]
    if _is_loopback(urlsplit(url).hostname):
        handlers.append(urllib.request.ProxyHandler({}))
    opener = urllib.request.build_opener(*handlers)
    request = urllib.request.Request(
        url, headers={"Accept": "application/json", "User-Agent": "bastion"}
    )
    with opener.open(request, timeout=timeout) as response:
        body: bytes = response.read(MAX_JWKS_BYTES + 1)
    if len(body) > MAX_JWKS_BYTES:
        raise ValueError(f"JWKS larger than {MAX_JWKS_BYTES} bytes")
    return parse_jwks(json.loads(body))


class _KeySource(Protocol):
    async def keys(self) -> tuple[SigningKey, ...]: ...

    async def refresh(self) -> None:
        """Fetch the keys again now, unless a fetch was attempted too recently."""
        ...


class _FileKeys:
    """Keys from a JWKS file, read at start and again whenever the file changes."""

    def __init__(self, issuer_name: str, path: Path) -> None:
        self._issuer_name = issuer_name
        self._path = path
        self._stamp: tuple[int, int, int] | None = None
        try:
            self._keys = self._read()
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"OIDC issuer {issuer_name!r}: cannot load JWKS file {path}: {_describe(exc)}"
            ) from exc

    def _read(self) -> tuple[SigningKey, ...]:
        with self._path.open("rb") as handle:
            info = os.fstat(handle.fileno())
            body = handle.read(MAX_JWKS_BYTES + 1)
        if len(body) > MAX_JWKS_BYTES:
            raise ValueError(f"JWKS larger than {MAX_JWKS_BYTES} bytes")
        keys = parse_jwks(json.loads(body))
        self._stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
        return keys

    async def keys(self) -> tuple[SigningKey, ...]:
        try:
            info = os.stat(self._path)
            current: tuple[int, int, int] | None = (info.st_ino, info.st_mtime_ns, info.st_size)
        except OSError:
            current = None
        if current != self._stamp:
            # Remembered even if unreadable, so a broken file is retried (and logged) only
            # when it changes again.
            self._stamp = current
            try:
                self._keys = self._read()
            except (OSError, ValueError) as exc:
                # Keep the last good keys: a file being rewritten must not lock everyone out.
                # An operator revokes a key by writing a JWKS without it, which takes effect.
                logger.warning(
                    "OIDC issuer %r: JWKS file %s unreadable, keeping previous keys: %s",
                    self._issuer_name,
                    self._path,
                    _describe(exc),
                )
        return self._keys

    async def refresh(self) -> None:
        pass  # keys() already rereads the file whenever it changes


class _UrlKeys:
    """Keys from a JWKS URL, cached for JWKS_TTL_SECONDS and refetched on unknown key ids."""

    def __init__(
        self, issuer_name: str, url: str, timeout: float, clock: Callable[[], float]
    ) -> None:
        try:
            check_jwks_url(url)
        except ValueError as exc:
            raise ConfigError(f"OIDC issuer {issuer_name!r}: {exc}") from None
        self._issuer_name = issuer_name
        self._url = url
        self._timeout = timeout
        self._clock = clock
        self._keys: tuple[SigningKey, ...] = ()
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()

    async def keys(self) -> tuple[SigningKey, ...]:
        now = self._clock()
        if self._fetched_at is None or now - self._fetched_at >= JWKS_TTL_SECONDS:
            await self.refresh()
        return self._keys

    async def refresh(self) -> None:
        async with self._lock:
            now = self._clock()
            # Also true when another task fetched while this one waited for the lock; the
            # caller then reads the keys that fetch brought.
            if self._attempted_at is not None and now - self._attempted_at < JWKS_REFETCH_INTERVAL:
                return
            self._attempted_at = now
            try:
                keys = await asyncio.to_thread(fetch_jwks, self._url, self._timeout)
            except (OSError, ValueError) as exc:
                logger.warning(
                    "OIDC issuer %r: fetching JWKS from %s failed%s: %s",
                    self._issuer_name,
                    self._url,
                    ", keeping previous keys" if self._keys else "",
                    _describe(exc),
                )
                return
            self._keys = keys
            self._fetched_at = now


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    if isinstance(exc, json.JSONDecodeError):
        return "not valid JSON"
    return str(exc)


_DECODE_FAILURES: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid"),
    (jwt.InvalidIssuerError, "issuer mismatch"),
    (jwt.InvalidAudienceError, "audience mismatch"),
    (jwt.InvalidSignatureError, "signature invalid"),
    (jwt.InvalidAlgorithmError, "algorithm not allowed"),
    (jwt.InvalidIssuedAtError, "invalid iat claim"),
    (jwt.InvalidKeyError, "key does not fit algorithm"),
    (jwt.DecodeError, "malformed token"),
)


class OidcVerifier:
    """Verifies tokens from one issuer and turns them into identities."""

    def __init__(
        self,
        issuer: OidcIssuer,
        *,
        fetch_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._issuer = issuer
        self._algorithms = frozenset(
            alg
            for alg in issuer.algorithms
            if alg.lower() != "none"
            and not alg.upper().startswith("HS")
            and _key_type_for(alg) is not None
        )
        if not self._algorithms:
            raise ConfigError(f"OIDC issuer {issuer.name!r}: no usable signature algorithm")
        self._source: _KeySource
        if issuer.jwks_file is not None:
            self._source = _FileKeys(issuer.name, issuer.jwks_file)
        elif issuer.jwks_url is not None:
            self._source = _UrlKeys(issuer.name, issuer.jwks_url, fetch_timeout, clock)
        else:  # pragma: no cover - OidcIssuer requires one of them
            raise ConfigError(f"OIDC issuer {issuer.name!r}: no JWKS source")

    def __repr__(self) -> str:
        return f"OidcVerifier(issuer={self._issuer.name!r})"

    @property
    def issuer(self) -> OidcIssuer:
        return self._issuer

    async def verify(self, token: str, username: str) -> Identity:
        """The identity `token` proves for startup user `username`, or CredentialsRejected."""
        # Imported here: the directory builds verifiers, so it cannot be imported at the top.
        from bastion.identity.directory import Identity

        def fail(reason: str) -> CredentialsRejected:
            return credentials_failed(username, reason)

        if len(token) > MAX_TOKEN_LENGTH:
            raise fail("token too large")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise fail("malformed token") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise fail("algorithm not allowed")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise fail("malformed token")
        key = await self._find_key(kid, alg, fail)
        claims = self._decode(token, key, alg, fail)

        subject = claims.get(self._issuer.username_claim)
        if not isinstance(subject, str):
            raise fail(f"username claim {self._issuer.username_claim!r} missing")
        if subject != username:
            raise fail("username mismatch")
        return Identity(
            name=username,
            groups=self._groups(claims, fail),
            kind=self._kind(claims, fail),
            auth_method=f"oidc:{self._issuer.name}",
        )

    async def _find_key(
        self, kid: str | None, alg: str, fail: Callable[[str], CredentialsRejected]
    ) -> SigningKey:
        keys = await self._source.keys()
        if kid is not None and all(key.kid != kid for key in keys):
            # A new key id usually means the issuer rotated its keys since the last fetch.
            await self._source.refresh()
            keys = await self._source.keys()
        if not keys:
            raise fail("no signing keys available")
        if kid is None:
            # Without a key id only an unambiguous key set will do.
            if len(keys) == 1 and keys[0].fits(alg):
                return keys[0]
            raise fail("token has no key id")
        matching = [key for key in keys if key.kid == kid]
        if not matching:
            raise fail("unknown key id")
        for key in matching:
            if key.fits(alg):
                return key
        raise fail("key does not fit algorithm")

    def _decode(
        self,
        token: str,
        key: SigningKey,
        alg: str,
        fail: Callable[[str], CredentialsRejected],
    ) -> dict[str, Any]:
        issuer = self._issuer
        try:
            claims = jwt.decode(
                token,
                key.public_key,
                algorithms=[alg],
                audience=issuer.audience,
                issuer=issuer.issuer,
                leeway=issuer.leeway_seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.MissingRequiredClaimError as exc:
            raise fail(f"missing claim {exc.claim!r}") from None
        except jwt.PyJWTError as exc:
            for error_type, reason in _DECODE_FAILURES:
                if isinstance(exc, error_type):
                    raise fail(reason) from None
            raise fail("token invalid") from None
        # PyJWT checks these too; checked again so a library regression cannot let one through.
        if claims.get("iss") != issuer.issuer:
            raise fail("issuer mismatch")
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if issuer.audience not in audiences:
            raise fail("audience mismatch")
        return claims

    def _groups(
        self, claims: dict[str, Any], fail: Callable[[str], CredentialsRejected]
    ) -> tuple[str, ...]:
        groups = claims.get(self._issuer.groups_claim)
        if groups is None:
            return ()
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            # Refused rather than ignored: a policy may deny by group membership.
            raise fail("groups claim is not a list of strings")
        return tuple(groups)

    def _kind(
        self, claims: dict[str, Any], fail: Callable[[str], CredentialsRejected]
    ) -> IdentityKind:
        claim = self._issuer.kind_claim
        if claim is None or claim not in claims:
            return self._issuer.kind
        try:
            return IdentityKind(claims[claim])
        except ValueError:
            # Refused rather than defaulted: an agent must not pass as a human by a typo.
            raise fail(f"kind claim {claim!r} is not human, service or agent") from None

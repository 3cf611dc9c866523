"""OidcVerifier: real keys, real JWKS files and a real JWKS web server; forged tokens refused."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import urllib.error
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from bastion.errors import ConfigError
from bastion.identity.directory import Identity
from bastion.identity.oidc import (
    JWKS_REFETCH_INTERVAL,
    JWKS_TTL_SECONDS,
    OidcVerifier,
    check_jwks_url,
    fetch_jwks,
    parse_jwks,
)
from bastion.identity.records import IdentityKind, OidcIssuer
from bastion.identity.scram import CredentialsRejected

from .tokens import (
    AUDIENCE,
    ISSUER,
    FakeClock,
    JwksServer,
    SigningKeyPair,
    b64url,
    claims,
    hand_made,
    jwks,
    write_jwks,
)

UNIFORM = 'password authentication failed for user "alice"'


def issuer_for(path: Path, **overrides: Any) -> OidcIssuer:
    settings: dict[str, Any] = {
        "name": "corp",
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "jwks_file": path,
    }
    settings.update(overrides)
    return OidcIssuer(**settings)


def verify(verifier: OidcVerifier, token: str, user: str = "alice") -> Identity:
    return asyncio.run(verifier.verify(token, user))


def reason(verifier: OidcVerifier, token: str, user: str = "alice") -> str:
    with pytest.raises(CredentialsRejected) as caught:
        verify(verifier, token, user)
    error = caught.value
    assert error.message == f'password authentication failed for user "{user}"'
    assert error.sqlstate == "28P01"
    # No part of the token (long enough to mean something) may reach messages or reasons.
    pieces = [piece for piece in token.split(".") if len(piece) >= 8]
    for text in (str(error), repr(error), error.reason):
        assert not any(piece in text for piece in pieces)
    return error.reason


@pytest.fixture
def jwks_file(tmp_path: Path, rsa_key: SigningKeyPair, ec_key: SigningKeyPair) -> Path:
    return write_jwks(tmp_path / "jwks.json", jwks(rsa_key, ec_key))


@pytest.fixture
def verifier(jwks_file: Path) -> OidcVerifier:
    return OidcVerifier(issuer_for(jwks_file))


class TestValidTokens:
    def test_rsa_token(self, verifier: OidcVerifier, rsa_key: SigningKeyPair) -> None:
        identity = verify(verifier, rsa_key.mint(claims()))
        assert identity == Identity(
            name="alice",
            groups=("analysts", "oncall"),
            kind=IdentityKind.HUMAN,
            auth_method="oidc:corp",
        )

    def test_ec_token(self, verifier: OidcVerifier, ec_key: SigningKeyPair) -> None:
        assert verify(verifier, ec_key.mint(claims())).name == "alice"

    def test_audience_list_containing_ours(
        self, verifier: OidcVerifier, rsa_key: SigningKeyPair
    ) -> None:
        token = rsa_key.mint(claims(aud=["other-app", AUDIENCE]))
        assert verify(verifier, token).name == "alice"

    def test_expiry_within_leeway(self, verifier: OidcVerifier, rsa_key: SigningKeyPair) -> None:
        now = claims()["iat"]
        token = rsa_key.mint(claims(exp=now - 10, iat=now - 100, nbf=now - 100))
        assert verify(verifier, token).name == "alice"

    def test_missing_groups_claim_means_no_groups(
        self, verifier: OidcVerifier, rsa_key: SigningKeyPair
    ) -> None:
        assert verify(verifier, rsa_key.mint(claims(groups=None))).groups == ()

    def test_custom_claims(self, jwks_file: Path, rsa_key: SigningKeyPair) -> None:
        verifier = OidcVerifier(
            issuer_for(
                jwks_file,
                username_claim="email",
                groups_claim="roles",
                kind=IdentityKind.SERVICE,
                kind_claim="principal_kind",
            )
        )
        token = rsa_key.mint(claims(email="bot@example.com", roles=["etl"], principal_kind="agent"))
        identity = verify(verifier, token, "bot@example.com")
        assert identity.groups == ("etl",)
        assert identity.kind is IdentityKind.AGENT
        without_kind = rsa_key.mint(claims(email="bot@example.com"))
        assert verify(verifier, without_kind, "bot@example.com").kind is IdentityKind.SERVICE

    def test_token_without_kid_when_the_key_set_has_one_key(
        self, tmp_path: Path, rsa_key: SigningKeyPair
    ) -> None:
        verifier = OidcVerifier(issuer_for(write_jwks(tmp_path / "one.json", jwks(rsa_key))))
        assert verify(verifier, rsa_key.mint(claims(), kid=None)).name == "alice"


class TestRefusedTokens:
    @pytest.mark.parametrize(
        ("overrides", "expected"),
        [
            ({"exp": -3600}, "token expired"),
            ({"nbf": +3600}, "token not yet valid"),
            ({"iat": +3600}, "token not yet valid"),
            ({"exp": None}, "missing claim 'exp'"),
            ({"iss": "https://evil.example.com/"}, "issuer mismatch"),
            ({"iss": ISSUER.rstrip("/")}, "issuer mismatch"),
            ({"iss": None}, "missing claim 'iss'"),
            ({"aud": "other-app"}, "audience mismatch"),
            ({"aud": ["other-app", "x"]}, "audience mismatch"),
            ({"aud": None}, "missing claim 'aud'"),
            ({"preferred_username": "bob"}, "username mismatch"),
            ({"preferred_username": None}, "username claim 'preferred_username' missing"),
            ({"groups": "analysts"}, "groups claim is not a list of strings"),
            ({"groups": ["analysts", 7]}, "groups claim is not a list of strings"),
        ],
    )
    def test_claims(
        self,
        verifier: OidcVerifier,
        rsa_key: SigningKeyPair,
        overrides: dict[str, Any],
        expected: str,
    ) -> None:
        now = claims()["iat"]
        for name in ("exp", "nbf", "iat"):
            if isinstance(overrides.get(name), int):
                overrides = {**overrides, name: now + overrides[name]}
        assert reason(verifier, rsa_key.mint(claims(**overrides))) == expected

    def test_invalid_kind_claim(self, jwks_file: Path, rsa_key: SigningKeyPair) -> None:
        verifier = OidcVerifier(issuer_for(jwks_file, kind_claim="kind"))
        assert "kind claim" in reason(verifier, rsa_key.mint(claims(kind="robot")))

    def test_wrong_key_with_a_known_kid(
        self, verifier: OidcVerifier, other_rsa_key: SigningKeyPair
    ) -> None:
        assert reason(verifier, other_rsa_key.mint(claims())) == "signature invalid"

    def test_tampered_payload(self, verifier: OidcVerifier, rsa_key: SigningKeyPair) -> None:
        header, _, signature = rsa_key.mint(claims()).split(".")
        forged_payload = b64url(json.dumps(claims(preferred_username="alice")).encode())
        token = f"{header}.{forged_payload}x.{signature}"
        assert reason(verifier, token) in ("signature invalid", "malformed token")
        token = f"{header}.{b64url(json.dumps(claims(groups=['admins'])).encode())}.{signature}"
        assert reason(verifier, token) == "signature invalid"

    def test_alg_none(self, verifier: OidcVerifier) -> None:
        for alg in ("none", "None", "NONE"):
            token = hand_made({"alg": alg, "typ": "JWT", "kid": "rsa-1"}, claims())
            assert reason(verifier, token) == "algorithm not allowed"

    def test_hs256_signed_with_the_public_key(
        self, verifier: OidcVerifier, rsa_key: SigningKeyPair
    ) -> None:
        # The classic confusion: a verifier that lets the token pick HMAC would use the public
        # key (which everyone has) as the shared secret.
        pem = rsa_key.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        header = {"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}
        unsigned = hand_made(header, claims()).rsplit(".", 1)[0]
        signature = hmac.new(pem, unsigned.encode(), hashlib.sha256).digest()
        assert reason(verifier, f"{unsigned}.{b64url(signature)}") == "algorithm not allowed"

    def test_hmac_keys_in_the_jwks_are_never_used(self, tmp_path: Path) -> None:
        secret = b"shared-secret-shared-secret-1234"
        document = {"keys": [{"kty": "oct", "kid": "hmac", "k": b64url(secret), "alg": "HS256"}]}
        assert parse_jwks(document) == ()
        path = write_jwks(tmp_path / "hmac.json", document)
        verifier = OidcVerifier(issuer_for(path))
        unsigned = hand_made({"alg": "HS256", "kid": "hmac"}, claims()).rsplit(".", 1)[0]
        signature = hmac.new(secret, unsigned.encode(), hashlib.sha256).digest()
        assert reason(verifier, f"{unsigned}.{b64url(signature)}") == "algorithm not allowed"

    def test_alg_not_allowed_for_this_issuer(
        self, jwks_file: Path, rsa_key: SigningKeyPair
    ) -> None:
        verifier = OidcVerifier(issuer_for(jwks_file, algorithms=("ES256",)))
        assert reason(verifier, rsa_key.mint(claims())) == "algorithm not allowed"

    def test_key_type_must_fit_the_algorithm(
        self, verifier: OidcVerifier, ec_key: SigningKeyPair
    ) -> None:
        # Signed with the EC key but pointing at the RSA key's id.
        token = ec_key.mint(claims(), kid="rsa-1")
        assert reason(verifier, token) == "key does not fit algorithm"

    def test_unknown_kid(self, verifier: OidcVerifier, rotated_rsa_key: SigningKeyPair) -> None:
        assert reason(verifier, rotated_rsa_key.mint(claims())) == "unknown key id"

    def test_no_kid_with_several_keys(
        self, verifier: OidcVerifier, rsa_key: SigningKeyPair
    ) -> None:
        assert reason(verifier, rsa_key.mint(claims(), kid=None)) == "token has no key id"

    @pytest.mark.parametrize(
        "token", ["", "abc", "a.b.c", "a.b", "...", "eyJhbGciOiJSUzI1NiJ9.e30.AAAA"]
    )
    def test_malformed(self, verifier: OidcVerifier, token: str) -> None:
        assert reason(verifier, token) in (
            "malformed token",
            "algorithm not allowed",
            "token has no key id",
        )

    def test_oversized(self, verifier: OidcVerifier, rsa_key: SigningKeyPair) -> None:
        token = rsa_key.mint(claims(padding="x" * 20_000))
        assert reason(verifier, token) == "token too large"


class TestJwksFile:
    def test_missing_or_broken_file_is_a_config_error(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="cannot load JWKS file"):
            OidcVerifier(issuer_for(tmp_path / "absent.json"))
        broken = tmp_path / "broken.json"
        broken.write_text("{not json")
        with pytest.raises(ConfigError, match="not valid JSON"):
            OidcVerifier(issuer_for(broken))

    def test_rotation_and_revocation_by_rewriting_the_file(
        self, tmp_path: Path, rsa_key: SigningKeyPair, rotated_rsa_key: SigningKeyPair
    ) -> None:
        path = write_jwks(tmp_path / "jwks.json", jwks(rsa_key))
        verifier = OidcVerifier(issuer_for(path))
        old, new = rsa_key.mint(claims()), rotated_rsa_key.mint(claims())
        assert verify(verifier, old).name == "alice"
        assert reason(verifier, new) == "unknown key id"
        write_jwks(path, jwks(rsa_key, rotated_rsa_key))
        assert verify(verifier, new).name == "alice"
        write_jwks(path, jwks(rotated_rsa_key))
        assert reason(verifier, old) == "unknown key id"

    def test_a_broken_rewrite_keeps_the_previous_keys(
        self, tmp_path: Path, rsa_key: SigningKeyPair, caplog: pytest.LogCaptureFixture
    ) -> None:
        path = write_jwks(tmp_path / "jwks.json", jwks(rsa_key))
        verifier = OidcVerifier(issuer_for(path))
        path.write_text('{"keys": [')
        with caplog.at_level(logging.WARNING, logger="bastion.identity.oidc"):
            for _ in range(3):
                assert verify(verifier, rsa_key.mint(claims())).name == "alice"
        warnings = [r for r in caplog.records if "keeping previous keys" in r.getMessage()]
        assert len(warnings) == 1  # once per broken version of the file, not per login
        path.unlink()
        assert verify(verifier, rsa_key.mint(claims())).name == "alice"


class TestJwksUrl:
    def url_verifier(self, server: JwksServer, clock: FakeClock) -> OidcVerifier:
        issuer = OidcIssuer(name="corp", issuer=ISSUER, audience=AUDIENCE, jwks_url=server.url)
        return OidcVerifier(issuer, fetch_timeout=5, clock=clock)

    def test_fetched_once_then_cached_until_the_ttl(
        self, jwks_server: JwksServer, rsa_key: SigningKeyPair
    ) -> None:
        jwks_server.document = jwks(rsa_key)
        clock = FakeClock()
        verifier = self.url_verifier(jwks_server, clock)

        async def scenario() -> None:
            token = rsa_key.mint(claims())
            await verifier.verify(token, "alice")
            await verifier.verify(token, "alice")
            assert jwks_server.requests == 1
            clock.advance(JWKS_TTL_SECONDS - 1)
            await verifier.verify(token, "alice")
            assert jwks_server.requests == 1
            clock.advance(2)
            await verifier.verify(token, "alice")
            assert jwks_server.requests == 2

        asyncio.run(scenario())

    def test_key_rotation_refetches_at_most_every_30_seconds(
        self,
        jwks_server: JwksServer,
        rsa_key: SigningKeyPair,
        rotated_rsa_key: SigningKeyPair,
    ) -> None:
        jwks_server.document = jwks(rsa_key)
        clock = FakeClock()
        verifier = self.url_verifier(jwks_server, clock)
        rotated = rotated_rsa_key.mint(claims())

        async def scenario() -> None:
            await verifier.verify(rsa_key.mint(claims()), "alice")
            jwks_server.document = jwks(rsa_key, rotated_rsa_key)
            # Too soon after the last fetch: an attacker spraying key ids gets no fetches.
            for _ in range(5):
                with pytest.raises(CredentialsRejected) as caught:
                    await verifier.verify(rotated, "alice")
                assert caught.value.reason == "unknown key id"
            assert jwks_server.requests == 1
            clock.advance(JWKS_REFETCH_INTERVAL)
            identity = await verifier.verify(rotated, "alice")
            assert identity.name == "alice"
            assert jwks_server.requests == 2

        asyncio.run(scenario())

    def test_concurrent_unknown_kids_share_one_fetch(
        self,
        jwks_server: JwksServer,
        rsa_key: SigningKeyPair,
        rotated_rsa_key: SigningKeyPair,
    ) -> None:
        jwks_server.document = jwks(rsa_key, rotated_rsa_key)
        verifier = self.url_verifier(jwks_server, FakeClock())

        async def scenario() -> list[Identity]:
            tokens = [rsa_key.mint(claims()), rotated_rsa_key.mint(claims())] * 5
            return await asyncio.gather(*(verifier.verify(t, "alice") for t in tokens))

        assert len(asyncio.run(scenario())) == 10
        assert jwks_server.requests == 1

    def test_fetch_failure_keeps_previous_keys_and_backs_off(
        self, jwks_server: JwksServer, rsa_key: SigningKeyPair
    ) -> None:
        jwks_server.document = jwks(rsa_key)
        clock = FakeClock()
        verifier = self.url_verifier(jwks_server, clock)
        token = rsa_key.mint(claims())

        async def scenario() -> None:
            await verifier.verify(token, "alice")
            jwks_server.status = 500
            clock.advance(JWKS_TTL_SECONDS)
            await verifier.verify(token, "alice")
            await verifier.verify(token, "alice")
            assert jwks_server.requests == 2

        asyncio.run(scenario())

    def test_unreachable_issuer_without_keys(self, jwks_server: JwksServer) -> None:
        jwks_server.status = 503
        verifier = self.url_verifier(jwks_server, FakeClock())
        token = hand_made({"alg": "RS256", "kid": "k"}, claims(), b"x")
        assert reason(verifier, token) == "no signing keys available"

    def test_redirect_to_plain_http_elsewhere_is_refused(self, jwks_server: JwksServer) -> None:
        jwks_server.redirect_to = "http://idp.example.com/jwks.json"
        with pytest.raises(urllib.error.URLError, match="refused redirect"):
            fetch_jwks(jwks_server.url, timeout=5)

    @pytest.mark.parametrize(
        "url",
        [
            "http://idp.example.com/jwks.json",
            "http://10.0.0.1/jwks.json",
            "ftp://idp.example.com/jwks.json",
            "file:///etc/passwd",
            "https:///jwks.json",
        ],
    )
    def test_only_https_or_loopback_http(self, url: str) -> None:
        with pytest.raises(ValueError):
            check_jwks_url(url)
        issuer = OidcIssuer(name="corp", issuer=ISSUER, audience=AUDIENCE, jwks_url=url)
        with pytest.raises(ConfigError):
            OidcVerifier(issuer)

    @pytest.mark.parametrize(
        "url",
        [
            "https://idp.example.com/.well-known/jwks.json",
            "http://127.0.0.1:8080/jwks",
            "http://[::1]/jwks",
            "http://localhost/jwks",
        ],
    )
    def test_accepted_urls(self, url: str) -> None:
        check_jwks_url(url)

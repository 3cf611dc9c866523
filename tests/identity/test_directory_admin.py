"""IdentityDirectory's helpers for the admin API: groups, password checks, self-naming tokens."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bastion.identity import directory as directory_module
from bastion.identity.directory import MAX_PASSWORD_LENGTH, Identity, IdentityDirectory
from bastion.identity.records import IdentityKind, OidcIssuer, UserRecord
from bastion.identity.scram import CredentialsRejected, make_verifier, verify_password

from .tokens import AUDIENCE, ISSUER, SigningKeyPair, claims, jwks, write_jwks

SECRET = b"k" * 32
ALICE = UserRecord(name="alice", groups=("dba", "oncall"), scram=make_verifier("a-pass"))
ETL = UserRecord(
    name="etl", kind=IdentityKind.SERVICE, scram=make_verifier("e-pass", iterations=8192)
)


def issuer(jwks_file: Path, **overrides: object) -> OidcIssuer:
    settings: dict[str, object] = {
        "name": "corp",
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "jwks_file": jwks_file,
    }
    settings.update(overrides)
    return OidcIssuer.model_validate(settings)


class TestGroupsOf:
    def test_password_users_have_their_groups(self) -> None:
        directory = IdentityDirectory([ALICE, ETL], [], SECRET)
        assert directory.groups_of("alice") == ("dba", "oncall")
        assert directory.groups_of("etl") == ()

    def test_unknown_users_have_none(self) -> None:
        assert IdentityDirectory([ALICE], [], SECRET).groups_of("mallory") is None


class TestCheckPassword:
    def test_right_password(self) -> None:
        directory = IdentityDirectory([ALICE, ETL], [], SECRET)
        assert directory.check_password("alice", "a-pass")
        assert directory.check_password("etl", "e-pass")

    def test_wrong_password_unknown_user_and_mixups_fail(self) -> None:
        directory = IdentityDirectory([ALICE, ETL], [], SECRET)
        assert not directory.check_password("alice", "a-pass ")
        assert not directory.check_password("alice", "e-pass")
        assert not directory.check_password("mallory", "a-pass")
        assert not directory.check_password("alice", "")

    def test_oversized_passwords_are_refused_without_work(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        directory = IdentityDirectory([ALICE], [], SECRET)
        monkeypatch.setattr(directory_module, "verify_password", _explode)
        assert not directory.check_password("alice", "x" * (MAX_PASSWORD_LENGTH + 1))

    def test_unknown_users_cost_the_same_work_as_real_ones(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # A PBKDF2 run with the usual iteration count, against a stable fake verifier, so the
        # answer's timing does not say whether the user exists.
        directory = IdentityDirectory([ETL, ETL.model_copy(update={"name": "etl2"})], [], SECRET)
        checked: list[str] = []
        real = verify_password

        def spy(verifier: str, password: str) -> bool:
            checked.append(verifier)
            return real(verifier, password)

        monkeypatch.setattr(directory_module, "verify_password", spy)
        assert not directory.check_password("ghost", "e-pass")
        assert not directory.check_password("ghost", "other")
        assert len(checked) == 2
        assert checked[0] == checked[1]  # stable per name
        assert checked[0].startswith("SCRAM-SHA-256$8192:")
        assert checked[0] != ETL.scram


def _explode(verifier: str, password: str) -> bool:
    raise AssertionError("no key derivation expected")


class TestTokenIdentity:
    def test_the_name_comes_from_the_issuers_claim(
        self, tmp_path: Path, rsa_key: SigningKeyPair
    ) -> None:
        path = write_jwks(tmp_path / "jwks.json", jwks(rsa_key))
        directory = IdentityDirectory([], [issuer(path)], SECRET)
        identity = asyncio.run(directory.token_identity(rsa_key.mint(claims())))
        assert identity == Identity(
            "alice", ("analysts", "oncall"), IdentityKind.HUMAN, "oidc:corp"
        )

    def test_a_custom_username_claim(self, tmp_path: Path, rsa_key: SigningKeyPair) -> None:
        path = write_jwks(tmp_path / "jwks.json", jwks(rsa_key))
        directory = IdentityDirectory([], [issuer(path, username_claim="email")], SECRET)
        token = rsa_key.mint(claims(email="bob@example.com"))
        identity = asyncio.run(directory.token_identity(token))
        assert identity.name == "bob@example.com"

    @pytest.mark.parametrize(
        ("overrides", "reason"),
        [
            ({"iss": "https://other.example.com/"}, "unknown issuer"),
            ({"preferred_username": None}, "username claim 'preferred_username' missing"),
            ({"exp": 1000}, "token expired"),
            ({"aud": "someone-else"}, "audience mismatch"),
        ],
    )
    def test_refused_tokens(
        self,
        tmp_path: Path,
        rsa_key: SigningKeyPair,
        overrides: dict[str, object],
        reason: str,
    ) -> None:
        path = write_jwks(tmp_path / "jwks.json", jwks(rsa_key))
        directory = IdentityDirectory([], [issuer(path)], SECRET)
        with pytest.raises(CredentialsRejected) as caught:
            asyncio.run(directory.token_identity(rsa_key.mint(claims(**overrides))))
        assert caught.value.reason == reason

    def test_a_token_signed_by_another_key_is_refused(
        self, tmp_path: Path, rsa_key: SigningKeyPair, other_rsa_key: SigningKeyPair
    ) -> None:
        path = write_jwks(tmp_path / "jwks.json", jwks(rsa_key))
        directory = IdentityDirectory([], [issuer(path)], SECRET)
        with pytest.raises(CredentialsRejected) as caught:
            asyncio.run(directory.token_identity(other_rsa_key.mint(claims())))
        assert caught.value.reason == "signature invalid"

    def test_garbage_and_oversized_tokens_are_refused(self, tmp_path: Path) -> None:
        directory = IdentityDirectory([], [], SECRET)
        for token, reason in (("not.a.jwt", "malformed token"), ("x" * 20000, "token too large")):
            with pytest.raises(CredentialsRejected) as caught:
                asyncio.run(directory.token_identity(token))
            assert caught.value.reason == reason

"""IdentityDirectory: merging user sources, SCRAM for known and unknown users, token routing."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest
from scramp import ScramClient

from bastion.errors import ConfigError
from bastion.identity.directory import Identity, IdentityDirectory
from bastion.identity.records import IdentityKind, OidcIssuer, UserRecord
from bastion.identity.scram import CredentialsRejected, make_verifier
from bastion.identity.users_file import UsersFile

from .tokens import AUDIENCE, ISSUER, SigningKeyPair, claims, hand_made, jwks, write_jwks

SECRET = b"k" * 32
ALICE = UserRecord(
    name="alice", groups=("analysts",), kind=IdentityKind.HUMAN, scram=make_verifier("a-pass")
)
ETL = UserRecord(name="etl", kind=IdentityKind.SERVICE, scram=make_verifier("e-pass"))


def scram_login(directory: IdentityDirectory, user: str, password: str) -> Identity:
    server = directory.scram_server(user)
    client = ScramClient(["SCRAM-SHA-256"], "ignored", password)
    client.set_server_first(
        server.handle_client_first("SCRAM-SHA-256", client.get_client_first().encode()).decode()
    )
    client.set_server_final(server.handle_client_final(client.get_client_final().encode()).decode())
    return directory.password_identity(user)


def salt_and_iterations(directory: IdentityDirectory, user: str) -> tuple[bytes, str]:
    client = ScramClient(["SCRAM-SHA-256"], "ignored", "x")
    first = directory.scram_server(user).handle_client_first(
        "SCRAM-SHA-256", client.get_client_first().encode()
    )
    fields = dict(part.split("=", 1) for part in first.decode().split(","))
    return base64.b64decode(fields["s"]), fields["i"]


class TestUsers:
    def test_password_login_gives_the_users_identity(self) -> None:
        directory = IdentityDirectory([ALICE, ETL], [], SECRET)
        assert scram_login(directory, "alice", "a-pass") == Identity(
            "alice", ("analysts",), IdentityKind.HUMAN, "scram-sha-256"
        )
        assert scram_login(directory, "etl", "e-pass").kind is IdentityKind.SERVICE

    def test_wrong_password_and_unknown_user_fail_alike(self) -> None:
        directory = IdentityDirectory([ALICE], [], SECRET)
        errors = []
        for user, password in (("alice", "wrong"), ("alicia", "a-pass")):
            with pytest.raises(CredentialsRejected) as caught:
                scram_login(directory, user, password)
            errors.append(caught.value)
        assert errors[0].message == 'password authentication failed for user "alice"'
        assert errors[1].message == 'password authentication failed for user "alicia"'
        assert [e.reason for e in errors] == ["wrong password", "unknown user"]

    def test_unknown_user_has_no_password_identity(self) -> None:
        directory = IdentityDirectory([ALICE], [], SECRET)
        with pytest.raises(CredentialsRejected):
            directory.password_identity("mallory")

    def test_fake_exchange_mimics_the_usual_iteration_count(self) -> None:
        strong = [
            UserRecord(name=f"u{i}", scram=make_verifier("p", iterations=8192)) for i in range(2)
        ]
        directory = IdentityDirectory([*strong, ALICE], [], SECRET)
        real_salt, real_iterations = salt_and_iterations(directory, "u0")
        fake_salt, fake_iterations = salt_and_iterations(directory, "nobody")
        assert fake_iterations == real_iterations == "8192"
        assert len(fake_salt) == len(real_salt)
        assert salt_and_iterations(directory, "nobody")[0] == fake_salt

    def test_duplicate_user_names(self) -> None:
        with pytest.raises(ConfigError, match="'alice'"):
            IdentityDirectory([ALICE, ALICE.model_copy(update={"groups": ()})], [], SECRET)

    def test_short_fake_secret(self) -> None:
        with pytest.raises(ConfigError, match="secret"):
            IdentityDirectory([ALICE], [], b"short")

    def test_unusable_verifier_is_a_config_error(self) -> None:
        # Matches the verifier pattern but the keys are not 32 bytes.
        broken = UserRecord.model_construct(
            name="bob",
            groups=(),
            kind=IdentityKind.HUMAN,
            scram="SCRAM-SHA-256$4096:AAAA$AA==:AA==",
        )
        with pytest.raises(ConfigError, match="'bob'"):
            IdentityDirectory([broken], [], SECRET)

    def test_from_sources_merges_inline_and_file_users(self, tmp_path: Path) -> None:
        users_file = UsersFile(tmp_path / "users.yaml")
        users_file.add(ETL)
        directory = IdentityDirectory.from_sources([ALICE], users_file, [], SECRET)
        assert set(directory.user_names) == {"alice", "etl"}
        assert scram_login(directory, "etl", "e-pass").name == "etl"

    def test_from_sources_refuses_a_name_in_both(self, tmp_path: Path) -> None:
        users_file = UsersFile(tmp_path / "users.yaml")
        users_file.add(ALICE.model_copy(update={"kind": IdentityKind.AGENT}))
        with pytest.raises(ConfigError, match=r"'alice'.*users\.yaml"):
            IdentityDirectory.from_sources([ALICE], users_file, [], SECRET)

    def test_from_sources_with_no_users_file(self, tmp_path: Path) -> None:
        directory = IdentityDirectory.from_sources(
            [ALICE], UsersFile(tmp_path / "absent.yaml"), [], SECRET
        )
        assert directory.user_names == ("alice",)


class TestTokens:
    @pytest.fixture
    def issuers(
        self, tmp_path: Path, rsa_key: SigningKeyPair, other_rsa_key: SigningKeyPair
    ) -> list[OidcIssuer]:
        return [
            OidcIssuer(
                name="corp",
                issuer=ISSUER,
                audience=AUDIENCE,
                jwks_file=write_jwks(tmp_path / "corp.json", jwks(rsa_key)),
            ),
            OidcIssuer(
                name="partner",
                issuer="https://partner.example.net",
                audience=AUDIENCE,
                kind=IdentityKind.AGENT,
                jwks_file=write_jwks(tmp_path / "partner.json", jwks(other_rsa_key)),
            ),
        ]

    def test_token_goes_to_the_issuer_it_names(
        self,
        issuers: list[OidcIssuer],
        rsa_key: SigningKeyPair,
        other_rsa_key: SigningKeyPair,
    ) -> None:
        directory = IdentityDirectory([], issuers, SECRET)
        assert directory.has_token_issuers
        corp = asyncio.run(directory.verify_token("alice", rsa_key.mint(claims())))
        assert corp.auth_method == "oidc:corp"
        partner_token = other_rsa_key.mint(claims(iss="https://partner.example.net"))
        partner = asyncio.run(directory.verify_token("alice", partner_token))
        assert (partner.auth_method, partner.kind) == ("oidc:partner", IdentityKind.AGENT)

    def test_naming_another_issuer_does_not_borrow_its_trust(
        self, issuers: list[OidcIssuer], rsa_key: SigningKeyPair
    ) -> None:
        # Signed by corp's key (same kid as partner's) but claiming to come from partner.
        directory = IdentityDirectory([], issuers, SECRET)
        token = rsa_key.mint(claims(iss="https://partner.example.net"))
        with pytest.raises(CredentialsRejected) as caught:
            asyncio.run(directory.verify_token("alice", token))
        assert caught.value.reason == "signature invalid"

    @pytest.mark.parametrize(
        ("token_claims", "expected"),
        [
            ({"iss": "https://evil.example.com/"}, "unknown issuer"),
            ({"iss": None}, "unknown issuer"),
        ],
    )
    def test_unknown_issuer(
        self,
        issuers: list[OidcIssuer],
        rsa_key: SigningKeyPair,
        token_claims: dict[str, object],
        expected: str,
    ) -> None:
        directory = IdentityDirectory([], issuers, SECRET)
        with pytest.raises(CredentialsRejected) as caught:
            asyncio.run(directory.verify_token("alice", rsa_key.mint(claims(**token_claims))))
        assert caught.value.message == 'password authentication failed for user "alice"'
        assert caught.value.reason == expected

    def test_issuer_that_is_not_a_string(
        self, issuers: list[OidcIssuer], rsa_key: SigningKeyPair
    ) -> None:
        directory = IdentityDirectory([], issuers, SECRET)
        token = hand_made({"alg": "RS256", "kid": rsa_key.kid}, claims(iss=[ISSUER]), b"sig")
        with pytest.raises(CredentialsRejected) as caught:
            asyncio.run(directory.verify_token("alice", token))
        assert caught.value.reason == "unknown issuer"

    def test_malformed_token(self, issuers: list[OidcIssuer]) -> None:
        directory = IdentityDirectory([], issuers, SECRET)
        with pytest.raises(CredentialsRejected) as caught:
            asyncio.run(directory.verify_token("alice", "not-a-token"))
        assert caught.value.reason == "malformed token"

    def test_without_issuers(self, rsa_key: SigningKeyPair) -> None:
        directory = IdentityDirectory([ALICE], [], SECRET)
        assert not directory.has_token_issuers
        with pytest.raises(CredentialsRejected) as caught:
            asyncio.run(directory.verify_token("alice", rsa_key.mint(claims())))
        assert caught.value.reason == "unknown issuer"

    def test_duplicate_issuers(self, issuers: list[OidcIssuer]) -> None:
        renamed = issuers[0].model_copy(update={"name": "corp-2"})
        with pytest.raises(ConfigError, match="more than once"):
            IdentityDirectory([], [issuers[0], renamed], SECRET)
        same_name = issuers[1].model_copy(update={"name": "corp"})
        with pytest.raises(ConfigError, match="'corp'"):
            IdentityDirectory([], [issuers[0], same_name], SECRET)

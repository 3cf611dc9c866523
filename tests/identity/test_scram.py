"""ScramServer and verifiers, driven by scramp's client and by the RFC 7677 test vector."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
import scramp.core
from hypothesis import given, settings
from hypothesis import strategies as st
from scramp import ScramClient

from bastion.errors import AuthenticationFailed
from bastion.identity.records import SCRAM_VERIFIER_RE, UserRecord
from bastion.identity.scram import (
    CredentialsRejected,
    ScramServer,
    fake_keys,
    make_verifier,
    parse_verifier,
    verify_password,
)

SECRET = b"s" * 32
PASSWORD = "hunter2-but-longer"
VERIFIER = make_verifier(PASSWORD)


def client_first(client: ScramClient, scram_user: str | None = "") -> bytes:
    """The client-first-message, with the SCRAM user name libpq sends (empty) by default."""
    message: str = client.get_client_first()
    if scram_user is not None:
        message = message.replace(f"n={client.username}", f"n={scram_user}")
        client.client_first_bare = message[3:]
    return message.encode()


def run(server: ScramServer, password: str, *, scram_user: str | None = "") -> tuple[bytes, bytes]:
    client = ScramClient(["SCRAM-SHA-256"], "ignored", password)
    first = server.handle_client_first("SCRAM-SHA-256", client_first(client, scram_user))
    client.set_server_first(first.decode())
    final = server.handle_client_final(client.get_client_final().encode())
    client.set_server_final(final.decode())  # raises unless the server proved the key too
    return first, final


def failure(server: ScramServer, password: str) -> CredentialsRejected:
    with pytest.raises(CredentialsRejected) as caught:
        run(server, password)
    return caught.value


def server_first_fields(server: ScramServer) -> dict[str, str]:
    client = ScramClient(["SCRAM-SHA-256"], "x", "whatever")
    first = server.handle_client_first("SCRAM-SHA-256", client_first(client))
    return dict(part.split("=", 1) for part in first.decode().split(","))


class TestExchange:
    def test_right_password_with_empty_scram_user_name(self) -> None:
        server = ScramServer("alice", VERIFIER, SECRET)
        assert not server.authenticated
        _, final = run(server, PASSWORD)
        assert final.startswith(b"v=")
        assert server.authenticated

    @pytest.mark.parametrize("scram_user", ["alice", "someone-else", "*", None])
    def test_scram_user_name_is_ignored(self, scram_user: str | None) -> None:
        server = ScramServer("alice", VERIFIER, SECRET)
        run(server, PASSWORD, scram_user=scram_user)
        assert server.authenticated

    def test_wrong_password(self) -> None:
        server = ScramServer("alice", VERIFIER, SECRET)
        error = failure(server, PASSWORD + "x")
        assert error.message == 'password authentication failed for user "alice"'
        assert error.sqlstate == "28P01"
        assert error.reason == "wrong password"
        assert not server.authenticated

    def test_unknown_user_fails_only_at_the_final_step_with_the_same_message(self) -> None:
        known = failure(ScramServer("alice", VERIFIER, SECRET), "guess")
        server = ScramServer("alice", None, SECRET)
        client = ScramClient(["SCRAM-SHA-256"], "x", PASSWORD)
        first = server.handle_client_first("SCRAM-SHA-256", client_first(client))
        client.set_server_first(first.decode())  # a well-formed challenge, like a real user's
        with pytest.raises(CredentialsRejected) as caught:
            server.handle_client_final(client.get_client_final().encode())
        assert str(caught.value) == str(known)
        assert caught.value.message == known.message
        assert caught.value.sqlstate == known.sqlstate
        assert caught.value.reason == "unknown user"

    def test_channel_binding_flag_y_is_accepted(self) -> None:
        server = ScramServer("alice", VERIFIER, SECRET)
        client = ScramClient(["SCRAM-SHA-256"], "x", PASSWORD)
        first = client_first(client).replace(b"n,,", b"y,,", 1)
        client.gs2_header = scramp.core.Gs2Header("y", None)
        client.client_first_bare = first.decode()[3:]
        client.set_server_first(server.handle_client_first("SCRAM-SHA-256", first).decode())
        final = server.handle_client_final(client.get_client_final().encode())
        assert final.startswith(b"v=")

    @pytest.mark.parametrize(
        "message",
        [
            b"p=tls-server-end-point,,n=,r=abcdef",
            b"p=tls-unique,,n=,r=abcdef",
            b"n,a=admin,n=,r=abcdef",
            b"n,,r=abcdef",
            b"n,,n=,r=",
            b"n,,n=,r=abc,m=ext",
            b"x,,n=,r=abcdef",
            b"",
            b"\xff\xfe",
            b"n,,n=," + b"r=" + b"a" * 5000,
        ],
    )
    def test_malformed_or_binding_client_first_is_refused(self, message: bytes) -> None:
        server = ScramServer("alice", VERIFIER, SECRET)
        with pytest.raises(CredentialsRejected) as caught:
            server.handle_client_first("SCRAM-SHA-256", message)
        assert caught.value.message == "malformed SCRAM message"
        assert caught.value.sqlstate == "28P01"
        # The exchange is over: nothing further is accepted.
        with pytest.raises(CredentialsRejected):
            server.handle_client_first("SCRAM-SHA-256", b"n,,n=,r=abcdef")

    @pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1", "PLAIN", ""])
    def test_other_mechanisms_are_refused(self, mechanism: str) -> None:
        server = ScramServer("alice", VERIFIER, SECRET)
        assert server.mechanisms == ("SCRAM-SHA-256",)
        with pytest.raises(CredentialsRejected) as caught:
            server.handle_client_first(mechanism, b"n,,n=,r=abcdef")
        assert caught.value.reason == "unsupported SASL mechanism"

    def test_final_before_first_is_refused(self) -> None:
        server = ScramServer("alice", VERIFIER, SECRET)
        with pytest.raises(CredentialsRejected, match="malformed"):
            server.handle_client_final(b"c=biws,r=abc,p=AAAA")

    def test_first_twice_is_refused(self) -> None:
        server = ScramServer("alice", VERIFIER, SECRET)
        server.handle_client_first("SCRAM-SHA-256", b"n,,n=,r=abcdef")
        with pytest.raises(CredentialsRejected, match="malformed"):
            server.handle_client_first("SCRAM-SHA-256", b"n,,n=,r=abcdef")

    def test_no_second_try_after_a_wrong_proof(self) -> None:
        server = ScramServer("alice", VERIFIER, SECRET)
        client = ScramClient(["SCRAM-SHA-256"], "x", PASSWORD)
        client.set_server_first(
            server.handle_client_first("SCRAM-SHA-256", client_first(client)).decode()
        )
        good_final = client.get_client_final()
        bad_final = (
            good_final[: good_final.index(",p=")] + ",p=" + base64.b64encode(b"\x00" * 32).decode()
        )
        with pytest.raises(CredentialsRejected):
            server.handle_client_final(bad_final.encode())
        with pytest.raises(CredentialsRejected):
            server.handle_client_final(good_final.encode())
        assert not server.authenticated

    @pytest.mark.parametrize(
        "tamper",
        [
            lambda final: final.replace("c=biws", "c=eSws"),  # binding flag changed to "y,,"
            lambda final: final.replace(",r=", ",r=x", 1),  # someone else's nonce
            lambda final: final.replace(",p=", ",p=!", 1),  # proof not base64
        ],
    )
    def test_tampered_client_final_is_refused(self, tamper: object) -> None:
        server = ScramServer("alice", VERIFIER, SECRET)
        client = ScramClient(["SCRAM-SHA-256"], "x", PASSWORD)
        client.set_server_first(
            server.handle_client_first("SCRAM-SHA-256", client_first(client)).decode()
        )
        assert callable(tamper)
        with pytest.raises(CredentialsRejected):
            server.handle_client_final(tamper(client.get_client_final()).encode())
        assert not server.authenticated

    def test_rfc7677_test_vector(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # RFC 7677 section 3: user "user", password "pencil", with fixed nonces.
        salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
        salted = hashlib.pbkdf2_hmac("sha256", b"pencil", salt, 4096)
        stored_key = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
        server_key = hmac.new(salted, b"Server Key", "sha256").digest()
        b64 = base64.b64encode
        verifier = (
            f"SCRAM-SHA-256$4096:{b64(salt).decode()}"
            f"${b64(stored_key).decode()}:{b64(server_key).decode()}"
        )
        server_nonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
        monkeypatch.setattr(scramp.core.Nonce, "create", classmethod(lambda cls: cls(server_nonce)))
        server = ScramServer("user", verifier, SECRET)
        first = server.handle_client_first("SCRAM-SHA-256", b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
        assert first == (
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
            b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        )
        final = server.handle_client_final(
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
            b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        )
        assert final == b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        assert verify_password(verifier, "pencil")


class TestFakeExchange:
    def test_fake_salt_is_stable_per_name_and_shaped_like_a_real_one(self) -> None:
        real = server_first_fields(ScramServer("alice", VERIFIER, SECRET))
        fake = server_first_fields(ScramServer("nobody", None, SECRET))
        again = server_first_fields(ScramServer("nobody", None, SECRET))
        assert fake["s"] == again["s"]
        assert len(base64.b64decode(fake["s"])) == len(base64.b64decode(real["s"])) == 16
        assert fake["i"] == real["i"] == "4096"
        assert len(fake["r"]) == len(real["r"])

    def test_fake_salt_differs_per_name_and_per_secret(self) -> None:
        salts = {
            server_first_fields(ScramServer(name, None, secret))["s"]
            for name, secret in [("a", SECRET), ("b", SECRET), ("a", b"t" * 32)]
        }
        assert len(salts) == 3

    def test_fake_iteration_count_follows_the_directory(self) -> None:
        fields = server_first_fields(ScramServer("nobody", None, SECRET, fake_iterations=8192))
        assert fields["i"] == "8192"

    def test_fake_keys_cannot_be_logged(self) -> None:
        keys = fake_keys(SECRET, "nobody")
        assert base64.b64encode(keys.stored_key).decode() not in repr(keys)
        assert base64.b64encode(keys.salt).decode() not in repr(keys)
        assert "stored" not in repr(ScramServer("nobody", None, SECRET))

    def test_empty_fake_secret_is_refused(self) -> None:
        with pytest.raises(ValueError):
            ScramServer("nobody", None, b"")


@settings(max_examples=300, deadline=None)
@given(first=st.binary(max_size=300), final=st.binary(max_size=300))
def test_garbage_only_ever_fails_authentication(first: bytes, final: bytes) -> None:
    for prefix in (b"", b"n,,n=,r="):
        server = ScramServer("alice", VERIFIER, SECRET)
        try:
            server.handle_client_first("SCRAM-SHA-256", prefix + first)
            server.handle_client_final(final)
        except AuthenticationFailed:
            pass
        assert not server.authenticated


class TestVerifiers:
    def test_format_is_postgresql_and_accepted_by_user_records(self) -> None:
        match = SCRAM_VERIFIER_RE.match(VERIFIER)
        assert match is not None
        assert match["iterations"] == "4096"
        assert len(base64.b64decode(match["salt"])) == 16
        UserRecord(name="alice", scram=VERIFIER)

    def test_salt_is_random(self) -> None:
        assert make_verifier(PASSWORD) != make_verifier(PASSWORD)

    def test_iterations(self) -> None:
        verifier = make_verifier(PASSWORD, iterations=10_000)
        assert parse_verifier(verifier).iterations == 10_000
        assert verify_password(verifier, PASSWORD)
        with pytest.raises(ValueError):
            make_verifier(PASSWORD, iterations=1000)

    def test_empty_password_is_refused(self) -> None:
        with pytest.raises(ValueError):
            make_verifier("")

    @pytest.mark.parametrize(
        ("stored_with", "checked_with", "expected"),
        [
            (PASSWORD, PASSWORD, True),
            (PASSWORD, PASSWORD.upper(), False),
            (PASSWORD, "", False),
            ("IX", "I\u00adX", True),  # SASLprep: soft hyphen maps to nothing
            ("a\u00a0b", "a b", True),  # SASLprep: non-ASCII space maps to space
            ("p\ue000ss", "p\ue000ss", True),  # SASLprep refuses it: raw password is used
            ("p\ue000ss", "pss", False),
        ],
    )
    def test_verify_password(self, stored_with: str, checked_with: str, expected: bool) -> None:
        assert verify_password(make_verifier(stored_with), checked_with) is expected

    @pytest.mark.parametrize(
        "verifier",
        [
            "md5abcdef",
            "SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA",  # keys too short
            "SCRAM-SHA-256$4096:c2FsdA==$" + "A" * 43 + "=:" + "A" * 43 + "=",  # salt too short
            "SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0$A=A=:A=A=",
        ],
    )
    def test_malformed_verifiers_are_refused_without_echo(self, verifier: str) -> None:
        with pytest.raises(ValueError) as caught:
            parse_verifier(verifier)
        assert verifier not in str(caught.value)

"""ApiAuthenticator: admin API tokens, OIDC tokens and password logins, over a real SQLite store."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from admin.harness import SECRET, password_user
from bastion.admin.auth import (
    TOKEN_PREFIX,
    ApiAuthenticator,
    LoginFailed,
    LoginThrottled,
    bearer_token,
    new_token,
)
from bastion.approvals.model import Approver
from bastion.approvals.service import ApprovalService, ApprovalSettings, token_digest
from bastion.approvals.sqlite_store import SQLiteApprovalStore
from bastion.identity.directory import IdentityDirectory
from bastion.identity.ratelimit import AuthRateLimiter
from bastion.identity.records import OidcIssuer
from identity.tokens import AUDIENCE, ISSUER, SigningKeyPair, claims, jwks, write_jwks

ALICE = password_user("alice", "dba")
BOB = password_user("bob", "analysts")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class Setup:
    """A service over a real store, a directory that tests may replace, an authenticator."""

    def __init__(self, tmp_path: Path, *, max_failures: int = 5) -> None:
        self.clock = Clock()
        self.store = SQLiteApprovalStore(tmp_path / "state.db")
        self.service = ApprovalService(self.store, ApprovalSettings(), clock=self.clock)
        self.directory = IdentityDirectory([ALICE, BOB], [], SECRET)
        self.limiter_clock = 100.0
        self.auth = ApiAuthenticator(
            self.service,
            lambda: self.directory,
            login_ttl=timedelta(hours=12),
            rate_limiter=AuthRateLimiter(max_failures, 60.0, clock=lambda: self.limiter_clock),
            clock=self.clock,
        )

    def login(self, user: str, password: str, source: str = "10.0.0.1") -> str:
        token, _record = asyncio.run(self.auth.login(user, password, source_address=source))
        return token

    def who(self, header: str | None) -> Approver | None:
        return asyncio.run(self.auth.authenticate(header))


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    made = Setup(tmp_path)
    yield made
    made.store.close()


@pytest.fixture(scope="module")
def rsa_key() -> SigningKeyPair:
    return SigningKeyPair("rsa-1", "RS256", rsa.generate_private_key(65537, 2048))


class TestBearerHeader:
    @pytest.mark.parametrize(
        ("header", "token"),
        [
            ("Bearer abc", "abc"),
            ("bearer   abc  ", "abc"),
            (None, None),
            ("", None),
            ("Bearer", None),
            ("Bearer ", None),
            ("Basic YWxpY2U6cHc=", None),
            ("Bearer " + "x" * 20000, None),
        ],
    )
    def test_parsing(self, header: str | None, token: str | None) -> None:
        assert bearer_token(header) == token


class TestAdminTokens:
    def test_login_issues_a_token_that_authenticates(self, setup: Setup) -> None:
        token = setup.login("alice", "alice-pw")
        assert token.startswith(TOKEN_PREFIX)
        assert setup.who(f"Bearer {token}") == Approver("alice", ("dba",))

    def test_only_the_digest_is_stored(self, setup: Setup) -> None:
        token = setup.login("alice", "alice-pw")
        (record,) = setup.store.list_tokens()
        assert record.digest == token_digest(token)
        assert token not in repr(record)
        assert record.user == "alice"
        assert record.expires_at == setup.clock.now + timedelta(hours=12)

    def test_missing_unknown_and_malformed_tokens_prove_nobody(self, setup: Setup) -> None:
        setup.login("alice", "alice-pw")
        for header in (None, "", "Bearer bst_not-a-token", "Token abc", "Bearer a.b.c"):
            assert setup.who(header) is None

    def test_an_expired_token_proves_nobody(self, setup: Setup) -> None:
        token = setup.login("alice", "alice-pw")
        setup.clock.now += timedelta(hours=11, minutes=59)
        assert setup.who(f"Bearer {token}") is not None
        setup.clock.now += timedelta(minutes=2)
        assert setup.who(f"Bearer {token}") is None

    def test_a_revoked_token_proves_nobody(self, setup: Setup) -> None:
        token = setup.login("alice", "alice-pw")
        (record,) = setup.store.list_tokens()
        assert setup.store.revoke_token(record.id)
        assert setup.who(f"Bearer {token}") is None

    def test_logout_revokes_the_presented_token_only(self, setup: Setup) -> None:
        first = setup.login("alice", "alice-pw")
        second = setup.login("alice", "alice-pw")
        assert asyncio.run(setup.auth.logout(f"Bearer {first}"))
        assert not asyncio.run(setup.auth.logout(f"Bearer {first}"))
        assert setup.who(f"Bearer {first}") is None
        assert setup.who(f"Bearer {second}") is not None

    def test_groups_are_read_at_request_time(self, setup: Setup) -> None:
        token = setup.login("alice", "alice-pw")
        promoted = ALICE.model_copy(update={"groups": ("dba", "security")})
        setup.directory = IdentityDirectory([promoted, BOB], [], SECRET)
        assert setup.who(f"Bearer {token}") == Approver("alice", ("dba", "security"))

    def test_a_removed_users_tokens_stop_working(self, setup: Setup) -> None:
        token = setup.login("alice", "alice-pw")
        setup.directory = IdentityDirectory([BOB], [], SECRET)
        assert setup.who(f"Bearer {token}") is None

    def test_tokens_made_outside_login_work_too(self, setup: Setup) -> None:
        token, record = new_token("bob", label="ci", now=setup.clock.now, ttl=None)
        setup.store.add_token(record)
        setup.clock.now += timedelta(days=3650)
        assert setup.who(f"Bearer {token}") == Approver("bob", ("analysts",))


class TestLogin:
    def test_wrong_password_and_unknown_user_fail_alike(self, setup: Setup) -> None:
        messages = []
        for user, password in (("alice", "nope"), ("nobody", "alice-pw")):
            with pytest.raises(LoginFailed) as caught:
                setup.login(user, password)
            messages.append((caught.value.status, caught.value.message))
        assert messages[0] == messages[1] == (401, "wrong user name or password")
        assert setup.store.list_tokens() == []

    def test_the_key_derivation_runs_off_the_event_loop(
        self, setup: Setup, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        threads: list[threading.Thread] = []
        real = IdentityDirectory.check_password

        def spy(directory: IdentityDirectory, user: str, password: str) -> bool:
            threads.append(threading.current_thread())
            return real(directory, user, password)

        monkeypatch.setattr(IdentityDirectory, "check_password", spy)
        setup.login("alice", "alice-pw")
        assert threads and threads[0] is not threading.main_thread()

    def test_failures_per_user_are_rate_limited(self, tmp_path: Path) -> None:
        setup = Setup(tmp_path, max_failures=3)
        try:
            for source in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
                with pytest.raises(LoginFailed):
                    setup.login("alice", "guess", source)
            # Even the right password is refused while the user is blocked.
            with pytest.raises(LoginThrottled) as caught:
                setup.login("alice", "alice-pw", "10.0.0.4")
            assert caught.value.status == 429
            assert setup.login("bob", "bob-pw", "10.0.0.4")  # others are not affected
            setup.limiter_clock += 61
            assert setup.login("alice", "alice-pw", "10.0.0.4")
        finally:
            setup.store.close()

    def test_parallel_guesses_cannot_outrun_the_limiter(self, tmp_path: Path) -> None:
        setup = Setup(tmp_path, max_failures=3)

        async def guess(source: str) -> str:
            try:
                await setup.auth.login("alice", "guess", source_address=source)
            except (LoginFailed, LoginThrottled) as exc:
                return type(exc).__name__
            return "ok"

        async def burst() -> list[str]:
            return await asyncio.gather(*(guess(f"10.0.0.{i}") for i in range(10)))

        try:
            outcomes = asyncio.run(burst())
            assert sorted(outcomes) == ["LoginFailed"] * 3 + ["LoginThrottled"] * 7
            assert len(setup.auth._in_flight) == 0
        finally:
            setup.store.close()

    def test_failures_per_source_are_rate_limited(self, tmp_path: Path) -> None:
        setup = Setup(tmp_path, max_failures=3)
        try:
            for user in ("u1", "u2", "u3"):
                with pytest.raises(LoginFailed):
                    setup.login(user, "guess", "10.6.6.6")
            with pytest.raises(LoginThrottled):
                setup.login("alice", "alice-pw", "10.6.6.6")
            assert setup.login("alice", "alice-pw", "10.0.0.9")
        finally:
            setup.store.close()


class TestOidcTokens:
    def oidc_setup(self, setup: Setup, tmp_path: Path, key: SigningKeyPair) -> None:
        path = write_jwks(tmp_path / "jwks.json", jwks(key))
        issuer = OidcIssuer(name="corp", issuer=ISSUER, audience=AUDIENCE, jwks_file=path)
        setup.directory = IdentityDirectory([ALICE], [issuer], SECRET)

    def test_a_valid_jwt_proves_its_user_and_groups(
        self, setup: Setup, tmp_path: Path, rsa_key: SigningKeyPair
    ) -> None:
        self.oidc_setup(setup, tmp_path, rsa_key)
        token = rsa_key.mint(claims(preferred_username="carol", groups=["dba"]))
        assert setup.who(f"Bearer {token}") == Approver("carol", ("dba",))

    def test_invalid_jwts_prove_nobody(
        self, setup: Setup, tmp_path: Path, rsa_key: SigningKeyPair
    ) -> None:
        self.oidc_setup(setup, tmp_path, rsa_key)
        expired = rsa_key.mint(claims(exp=int(datetime.now(UTC).timestamp()) - 3600))
        foreign = rsa_key.mint(claims(iss="https://elsewhere.example/"))
        tampered = rsa_key.mint(claims())[:-4] + "AAAA"
        for token in (expired, foreign, tampered):
            assert setup.who(f"Bearer {token}") is None

    def test_jwts_are_ignored_without_configured_issuers(
        self, setup: Setup, rsa_key: SigningKeyPair
    ) -> None:
        assert setup.who(f"Bearer {rsa_key.mint(claims())}") is None

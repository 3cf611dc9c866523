"""`bastion login/logout`, `bastion approvals` and `bastion tokens`, run through the CLI's main()
against a real admin API served by uvicorn on 127.0.0.1 (in a thread), over a real store."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from admin.harness import SECRET, Ready, password_user, request_draft
from admin.served import Cli, ServedAdmin
from bastion.admin.api import build_admin_app
from bastion.admin.auth import ApiAuthenticator
from bastion.approvals.model import ApprovalRequest
from bastion.approvals.service import ApprovalService, ApprovalSettings, token_digest
from bastion.approvals.sqlite_store import SQLiteApprovalStore
from bastion.datadir import DataDir
from bastion.identity.directory import IdentityDirectory
from bastion.identity.users_file import UsersFile


class RunningAdmin:
    """The admin app over a users file and a store that `bastion tokens` shares, served over
    HTTP."""

    def __init__(self, data_dir: Path) -> None:
        DataDir(data_dir).ensure()
        self.users_file = UsersFile(data_dir / "users.yaml")
        for name, group in (("alice", "dba"), ("bob", "dba"), ("dave", "dev")):
            self.users_file.add(password_user(name, group))
        self.store = SQLiteApprovalStore(data_dir / "state.db")
        self.service = ApprovalService(self.store, ApprovalSettings())
        auth = ApiAuthenticator(self.service, self.directory)
        self.served = ServedAdmin(build_admin_app(Ready(), approvals=self.service, auth=auth))
        self.url = self.served.url

    def directory(self) -> IdentityDirectory:
        # Re-read on every request, as a reload would: users added later count at once.
        return IdentityDirectory(self.users_file.load(), [], SECRET)

    def close(self) -> None:
        self.served.close()
        self.store.close()

    def create(
        self,
        statement: str = "DELETE FROM orders WHERE id = $1",
        *,
        parameters: tuple[str | None, ...] = ("7", None),
        min_approvals: int = 1,
    ) -> ApprovalRequest:
        now = datetime.now(UTC)
        draft = request_draft(
            now,
            statement,
            parameters=parameters,
            requester_groups=("dev",),
            policy_reason="writes on production need approval",
            min_approvals=min_approvals,
        )
        return self.store.create(draft, now)


@pytest.fixture
def admin(tmp_path: Path, cli: Cli) -> Iterator[RunningAdmin]:
    running = RunningAdmin(tmp_path / "data")
    cli.use(running.url)
    yield running
    running.close()


@pytest.fixture
def alice(admin: RunningAdmin, cli: Cli) -> Cli:
    """The command line, logged in as a dba, who may decide dave's requests."""
    assert cli.login("alice").code == 0
    return cli


class TestLogin:
    def test_login_stores_the_token_owner_only(self, admin: RunningAdmin, cli: Cli) -> None:
        logged_in = cli.login("alice")
        assert logged_in.code == 0
        assert f"logged in to {admin.url} as alice" in logged_in.out
        assert stat.S_IMODE(cli.token_file.stat().st_mode) == 0o600
        stored = json.loads(cli.token_file.read_text())
        assert list(stored) == [admin.url]
        assert stored[admin.url] not in logged_in.out  # the token is never printed
        (record,) = admin.store.list_tokens()
        assert record.digest == token_digest(stored[admin.url])

    def test_the_password_can_come_from_stdin(
        self, admin: RunningAdmin, cli: Cli, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr("sys.stdin", _Lines("bob-pw\n"))
        assert cli("login", "bob").code == 0
        assert cli.token_file.exists()

    def test_wrong_password_and_unknown_user_fail_alike(
        self, admin: RunningAdmin, cli: Cli
    ) -> None:
        wrong = cli.login("alice", password="wrong")
        unknown = cli.login("mallory", password="alice-pw")
        failed = "bastion login: login failed: wrong user name or password\n"
        assert wrong.code == unknown.code == 1
        assert wrong.err == unknown.err == failed
        assert not cli.token_file.exists()

    def test_logout_revokes_and_forgets_the_token(self, admin: RunningAdmin, alice: Cli) -> None:
        token = json.loads(alice.token_file.read_text())[admin.url]
        logged_out = alice("logout")
        assert logged_out.code == 0
        assert f"logged out of {admin.url}" in logged_out.out
        assert not alice.token_file.exists()
        assert [t.revoked for t in admin.store.list_tokens()] == [True]
        refused = alice("approvals", "list", "--token", token)
        assert refused.code == 1
        assert "refused the token" in refused.err
        again = alice("logout")
        assert again.code == 0
        assert "not logged in" in again.out

    def test_tokens_are_kept_per_admin_url(self, admin: RunningAdmin, cli: Cli) -> None:
        other = "http://127.0.0.1:1"
        cli.token_file.parent.mkdir(parents=True)
        cli.token_file.write_text(json.dumps({other: "bst_elsewhere"}))
        assert cli.login("alice").code == 0
        assert set(json.loads(cli.token_file.read_text())) == {other, admin.url}
        assert cli("logout").code == 0
        assert json.loads(cli.token_file.read_text()) == {other: "bst_elsewhere"}

    def test_an_unreachable_admin_api_is_reported(self, cli: Cli) -> None:
        unreachable = cli.login("alice", "--admin-url", "http://127.0.0.1:1", password="x")
        assert unreachable.code == 1
        assert "cannot reach Bastion's admin API at http://127.0.0.1:1" in unreachable.err


class TestApprovals:
    def test_not_logged_in_says_what_to_do(self, admin: RunningAdmin, cli: Cli) -> None:
        listed = cli("approvals", "list")
        assert listed.code == 1
        assert f"not logged in to {admin.url}: run `bastion login USER`" in listed.err

    def test_list_prints_a_table(self, admin: RunningAdmin, alice: Cli) -> None:
        long = "UPDATE accounts SET balance = 0 WHERE region = 'north' " + "AND x = 1 " * 20
        first = admin.create(long)
        second = admin.create("DELETE FROM orders")
        listed = alice("approvals", "list")
        assert listed.code == 0
        lines = listed.out.splitlines()
        assert lines[0].split() == [
            "ID", "STATE", "REQUESTER", "TARGET", "RULE", "VOTES", "CREATED", "STATEMENT"
        ]  # fmt: skip
        assert lines[1].split()[:6] == [
            str(second.id),
            "pending",
            "dave",
            "prod",
            "prod-writes",
            "0/1",
        ]
        assert lines[2].startswith(str(first.id))
        assert lines[2].endswith("...")
        as_json = alice("approvals", "list", "--json")
        assert as_json.code == 0
        document = json.loads(as_json.out)
        assert [r["id"] for r in document["approvals"]] == [second.id, first.id]

    def test_list_with_nothing_pending(self, alice: Cli) -> None:
        listed = alice("approvals", "list")
        assert listed.code == 0
        assert listed.out == "no pending requests\n"

    def test_show_prints_everything(self, admin: RunningAdmin, alice: Cli) -> None:
        request = admin.create("DELETE FROM orders\nWHERE id = $1", min_approvals=2)
        alice("approvals", "approve", str(request.id), "--comment", "ok by me")
        shown = alice("approvals", "show", str(request.id))
        assert shown.code == 0
        out = shown.out
        assert f"Approval request {request.id}: PENDING" in out
        assert "Statement:\n  DELETE FROM orders\n  WHERE id = $1\n" in out
        assert "  $1 = '7'\n  $2 = NULL\n" in out
        assert "dave (dev) from 10.1.2.3" in out
        assert "prod-writes: writes on production need approval" in out
        assert "ticket OPS-42" in out
        assert "1 of 2 needed (given: alice)" in out
        assert "alice approved: ok by me" in out
        assert "expires" in out and "created" in out

    def test_show_escapes_terminal_control_characters(
        self, admin: RunningAdmin, alice: Cli
    ) -> None:
        request = admin.create("DROP TABLE users;\r\x1b[2KSELECT 1 -- \u202e", parameters=())
        shown = alice("approvals", "show", str(request.id))
        assert shown.code == 0
        assert "\x1b" not in shown.out and "\r" not in shown.out and "\u202e" not in shown.out
        assert "DROP TABLE users;\\u000d\\u001b[2KSELECT 1 -- \\u202e" in shown.out

    def test_approve_and_deny(self, admin: RunningAdmin, alice: Cli) -> None:
        approved = admin.create("DELETE FROM a")
        denied = admin.create("DELETE FROM b")
        approving = alice("approvals", "approve", str(approved.id))
        assert approving.code == 0
        assert "it is approved, and the statement may now run" in approving.out
        denying = alice("approvals", "deny", str(denied.id), "--comment", "use a batch job")
        assert denying.code == 0
        assert f"denied request {denied.id}" in denying.out
        after = admin.store.get(denied.id)
        assert after is not None
        assert after.state_reason == "use a batch job"
        shown = alice("approvals", "show", str(denied.id))
        assert shown.code == 0
        assert "alice denied: use a batch job" in shown.out

    def test_refusals_are_reported_with_status_1(self, admin: RunningAdmin, cli: Cli) -> None:
        request = admin.create()
        assert cli.login("dave").code == 0
        refused = cli("approvals", "approve", str(request.id))
        assert refused.code == 1
        assert refused.err.startswith("bastion approvals approve: ")
        assert "you cannot approve or deny it yourself" in refused.err
        missing = cli("approvals", "show", "999")
        assert missing.code == 1
        assert "there is no approval request 999" in missing.err

    def test_a_bad_token_is_reported(self, admin: RunningAdmin, cli: Cli) -> None:
        refused = cli("approvals", "list", "--token", "bst_bogus")
        assert refused.code == 1
        assert "refused the token" in refused.err and "bastion login USER" in refused.err

    @pytest.mark.parametrize(
        "args",
        [
            ["list", "--state", "bogus"],
            ["list", "--limit", "0"],
            ["approve", "seven"],
            [],
        ],
    )
    def test_usage_errors_exit_2(self, admin: RunningAdmin, cli: Cli, args: list[str]) -> None:
        assert cli("approvals", *args).code == 2


class TestTokens:
    def test_create_list_revoke(
        self, admin: RunningAdmin, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        data_dir = str(tmp_path / "data")
        created = cli("tokens", "create", "--user", "bob", "--label", "ci", "--data-dir", data_dir)
        assert created.code == 0
        token = created.out.strip()
        assert token.startswith("bst_")
        assert "shown only this once" in created.err
        # The token works against the running Bastion, which shares the store.
        monkeypatch.setenv("BASTION_TOKEN", token)
        assert cli("approvals", "list").code == 0

        listed = cli("tokens", "list", "--data-dir", data_dir)
        assert listed.code == 0
        (record,) = admin.store.list_tokens()
        out = listed.out
        assert record.id in out and "bob" in out and "active" in out and "ci" in out
        assert token not in out and record.digest not in out
        expires = record.expires_at
        assert expires is not None
        assert timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30)

        assert cli("tokens", "revoke", record.id, "--data-dir", data_dir).code == 0
        assert cli("tokens", "revoke", record.id, "--data-dir", data_dir).code == 1
        refused = cli("approvals", "list")
        assert refused.code == 1
        assert "refused the token" in refused.err
        listed = cli("tokens", "list", "--data-dir", data_dir)
        assert listed.code == 0
        assert "revoked" in listed.out

    def test_never_expiring_tokens_and_a_configured_store(
        self, admin: RunningAdmin, cli: Cli, tmp_path: Path
    ) -> None:
        config = tmp_path / "bastion.yaml"
        config.write_text(f"data_dir: {tmp_path / 'data'}\nstate:\n  store: other.db\n")
        created = cli("tokens", "create", "--user", "alice", "--ttl", "never", "-c", str(config))
        assert created.code == 0
        assert (tmp_path / "data" / "other.db").exists()
        assert admin.store.list_tokens() == []  # not the default store
        listed = cli("tokens", "list", "--config", str(config))
        assert listed.code == 0
        assert "never" in listed.out

    def test_tokens_are_only_for_password_users(
        self, admin: RunningAdmin, cli: Cli, tmp_path: Path
    ) -> None:
        created = cli("tokens", "create", "--user", "nobody", "--data-dir", str(tmp_path / "data"))
        assert created.code == 2
        assert "is not a password user" in created.err
        assert admin.store.list_tokens() == []

    def test_usage_errors(self, cli: Cli, tmp_path: Path) -> None:
        assert cli("tokens", "create", "--user", "bob", "--ttl", "forever").code == 2
        listed = cli("tokens", "list", "--data-dir", str(tmp_path / "empty"))
        assert listed.code == 2
        assert "there is no state store" in listed.err
        assert not (tmp_path / "empty").exists()
        assert cli("tokens").code == 2


class _Lines:
    """A non-terminal stdin holding some text."""

    def __init__(self, text: str) -> None:
        self._lines = text.splitlines(keepends=True)

    def isatty(self) -> bool:
        return False

    def readline(self) -> str:
        return self._lines.pop(0) if self._lines else ""

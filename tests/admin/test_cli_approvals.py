"""`bastion login/logout`, `bastion approvals` and `bastion tokens`, run through the CLI's main()
against a real admin API served by uvicorn on 127.0.0.1 (in a thread), over a real store."""

from __future__ import annotations

import asyncio
import json
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bastion.admin.api import build_admin_app
from bastion.admin.auth import ApiAuthenticator
from bastion.admin.server import AdminServer
from bastion.approvals.model import ApprovalRequest, RequestDraft, grant_key
from bastion.approvals.service import ApprovalService, ApprovalSettings, token_digest
from bastion.approvals.sqlite_store import SQLiteApprovalStore
from bastion.cli.main import main
from bastion.datadir import DataDir
from bastion.identity.directory import IdentityDirectory
from bastion.identity.records import UserRecord
from bastion.identity.scram import make_verifier
from bastion.identity.users_file import UsersFile

SECRET = b"s" * 32


class Ready:
    accepting = True


class RunningAdmin:
    """The admin app served by the project's own AdminServer, on an event loop in a thread."""

    def __init__(self, data_dir: Path) -> None:
        DataDir(data_dir).ensure()
        self.users_file = UsersFile(data_dir / "users.yaml")
        for name, groups in (("alice", ("dba",)), ("bob", ("dba",)), ("dave", ("dev",))):
            record = UserRecord(name=name, groups=groups, scram=make_verifier(f"{name}-pw"))
            self.users_file.add(record)
        self.store = SQLiteApprovalStore(data_dir / "state.db")
        self.service = ApprovalService(self.store, ApprovalSettings())
        auth = ApiAuthenticator(self.service, self.directory)
        app = build_admin_app(Ready(), approvals=self.service, auth=auth)
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(app,), daemon=True)
        self._thread.start()
        assert self._started.wait(10), "the admin server did not start"
        if self._error is not None:
            raise self._error
        self.url = f"http://127.0.0.1:{self.port}"

    def directory(self) -> IdentityDirectory:
        # Re-read on every request, as a reload would: users added later count at once.
        return IdentityDirectory(self.users_file.load(), [], SECRET)

    def _run(self, app: object) -> None:
        async def serve() -> None:
            server = AdminServer(app, "127.0.0.1", 0)  # type: ignore[arg-type]
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                await server.start()
            except BaseException as exc:
                self._error = exc
                self._started.set()
                return
            self.port = server.port
            self._started.set()
            await self._stop.wait()
            await server.stop()

        asyncio.run(serve())

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self.store.close()

    def create(
        self,
        statement: str = "DELETE FROM orders WHERE id = $1",
        *,
        parameters: tuple[str | None, ...] = ("7", None),
        min_approvals: int = 1,
    ) -> ApprovalRequest:
        now = datetime.now(UTC)
        draft = RequestDraft(
            requester="dave",
            requester_groups=("dev",),
            source_address="10.1.2.3",
            target="prod",
            statement=statement,
            parameters=parameters,
            fingerprint="fp",
            grant_key=grant_key("dave", "prod", statement, parameters),
            rule="prod-writes",
            policy_reason="writes on production need approval",
            reason="ticket OPS-42",
            approver_groups=("dba",),
            min_approvals=min_approvals,
            session_id="s-1",
            expires_at=now + timedelta(hours=1),
        )
        return self.store.create(draft, now)


@pytest.fixture
def admin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningAdmin]:
    running = RunningAdmin(tmp_path / "data")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("BASTION_ADMIN_URL", running.url)
    for name in ("BASTION_TOKEN", "BASTION_PASSWORD", "BASTION_USER", "BASTION_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    yield running
    running.close()


def token_file(tmp_path: Path) -> Path:
    return tmp_path / "config" / "bastion" / "token"


def login(monkeypatch: pytest.MonkeyPatch, user: str) -> int:
    monkeypatch.setenv("BASTION_PASSWORD", f"{user}-pw")
    return main(["login", user])


class TestLogin:
    def test_login_stores_the_token_owner_only(
        self,
        admin: RunningAdmin,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        assert login(monkeypatch, "alice") == 0
        out = capsys.readouterr().out
        assert f"logged in to {admin.url} as alice" in out
        path = token_file(tmp_path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        stored = json.loads(path.read_text())
        assert list(stored) == [admin.url]
        assert stored[admin.url] not in out  # the token is never printed
        (record,) = admin.store.list_tokens()
        assert record.digest == token_digest(stored[admin.url])

    def test_the_password_can_come_from_stdin(
        self,
        admin: RunningAdmin,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr("sys.stdin", _Lines("bob-pw\n"))
        assert main(["login", "bob"]) == 0
        assert token_file(tmp_path).exists()

    def test_wrong_password_and_unknown_user_fail_alike(
        self,
        admin: RunningAdmin,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        monkeypatch.setenv("BASTION_PASSWORD", "wrong")
        assert main(["login", "alice"]) == 1
        wrong = capsys.readouterr().err
        monkeypatch.setenv("BASTION_PASSWORD", "alice-pw")
        assert main(["login", "mallory"]) == 1
        unknown = capsys.readouterr().err
        assert wrong == unknown == "bastion login: login failed: wrong user name or password\n"
        assert not token_file(tmp_path).exists()

    def test_logout_revokes_and_forgets_the_token(
        self,
        admin: RunningAdmin,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        assert login(monkeypatch, "alice") == 0
        token = json.loads(token_file(tmp_path).read_text())[admin.url]
        assert main(["logout"]) == 0
        assert f"logged out of {admin.url}" in capsys.readouterr().out
        assert not token_file(tmp_path).exists()
        assert [t.revoked for t in admin.store.list_tokens()] == [True]
        assert main(["approvals", "list", "--token", token]) == 1
        assert "refused the token" in capsys.readouterr().err
        assert main(["logout"]) == 0
        assert "not logged in" in capsys.readouterr().out

    def test_tokens_are_kept_per_admin_url(
        self, admin: RunningAdmin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        other = "http://127.0.0.1:1"
        path = token_file(tmp_path)
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({other: "bst_elsewhere"}))
        assert login(monkeypatch, "alice") == 0
        assert set(json.loads(path.read_text())) == {other, admin.url}
        assert main(["logout"]) == 0
        assert json.loads(path.read_text()) == {other: "bst_elsewhere"}

    def test_an_unreachable_admin_api_is_reported(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
        monkeypatch.setenv("BASTION_PASSWORD", "x")
        assert main(["login", "alice", "--admin-url", "http://127.0.0.1:1"]) == 1
        assert "cannot reach Bastion's admin API at http://127.0.0.1:1" in capsys.readouterr().err


class TestApprovals:
    def test_not_logged_in_says_what_to_do(
        self, admin: RunningAdmin, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["approvals", "list"]) == 1
        err = capsys.readouterr().err
        assert f"not logged in to {admin.url}: run `bastion login USER`" in err

    def test_list_prints_a_table(
        self,
        admin: RunningAdmin,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        long = "UPDATE accounts SET balance = 0 WHERE region = 'north' " + "AND x = 1 " * 20
        first = admin.create(long)
        second = admin.create("DELETE FROM orders")
        login(monkeypatch, "alice")
        capsys.readouterr()
        assert main(["approvals", "list"]) == 0
        lines = capsys.readouterr().out.splitlines()
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
        assert main(["approvals", "list", "--json"]) == 0
        document = json.loads(capsys.readouterr().out)
        assert [r["id"] for r in document["approvals"]] == [second.id, first.id]

    def test_list_with_nothing_pending(
        self,
        admin: RunningAdmin,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        login(monkeypatch, "alice")
        capsys.readouterr()
        assert main(["approvals", "list"]) == 0
        assert capsys.readouterr().out == "no pending requests\n"

    def test_show_prints_everything(
        self,
        admin: RunningAdmin,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        request = admin.create("DELETE FROM orders\nWHERE id = $1", min_approvals=2)
        login(monkeypatch, "alice")
        main(["approvals", "approve", str(request.id), "--comment", "ok by me"])
        capsys.readouterr()
        assert main(["approvals", "show", str(request.id)]) == 0
        out = capsys.readouterr().out
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
        self,
        admin: RunningAdmin,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        request = admin.create("DROP TABLE users;\r\x1b[2KSELECT 1 -- \u202e", parameters=())
        login(monkeypatch, "alice")
        capsys.readouterr()
        assert main(["approvals", "show", str(request.id)]) == 0
        out = capsys.readouterr().out
        assert "\x1b" not in out and "\r" not in out and "\u202e" not in out
        assert "DROP TABLE users;\\u000d\\u001b[2KSELECT 1 -- \\u202e" in out

    def test_approve_and_deny(
        self,
        admin: RunningAdmin,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        approved = admin.create("DELETE FROM a")
        denied = admin.create("DELETE FROM b")
        login(monkeypatch, "alice")
        capsys.readouterr()
        assert main(["approvals", "approve", str(approved.id)]) == 0
        assert "it is approved, and the statement may now run" in capsys.readouterr().out
        assert main(["approvals", "deny", str(denied.id), "--comment", "use a batch job"]) == 0
        assert f"denied request {denied.id}" in capsys.readouterr().out
        after = admin.store.get(denied.id)
        assert after is not None
        assert after.state_reason == "use a batch job"
        assert main(["approvals", "show", str(denied.id)]) == 0
        assert "alice denied: use a batch job" in capsys.readouterr().out

    def test_refusals_are_reported_with_status_1(
        self,
        admin: RunningAdmin,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        request = admin.create()
        login(monkeypatch, "dave")
        capsys.readouterr()
        assert main(["approvals", "approve", str(request.id)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("bastion approvals approve: ")
        assert "you cannot approve or deny it yourself" in err
        assert main(["approvals", "show", "999"]) == 1
        assert "there is no approval request 999" in capsys.readouterr().err

    def test_a_bad_token_is_reported(
        self, admin: RunningAdmin, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["approvals", "list", "--token", "bst_bogus"]) == 1
        err = capsys.readouterr().err
        assert "refused the token" in err and "bastion login USER" in err

    def test_usage_errors_exit_2(
        self, admin: RunningAdmin, capsys: pytest.CaptureFixture[str]
    ) -> None:
        for argv in (
            ["approvals", "list", "--state", "bogus"],
            ["approvals", "list", "--limit", "0"],
            ["approvals", "approve", "seven"],
        ):
            with pytest.raises(SystemExit) as caught:
                main(argv)
            assert caught.value.code == 2
        assert main(["approvals"]) == 2


class TestTokens:
    def test_create_list_revoke(
        self,
        admin: RunningAdmin,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        data_dir = str(tmp_path / "data")
        assert (
            main(["tokens", "create", "--user", "bob", "--label", "ci", "--data-dir", data_dir])
            == 0
        )
        captured = capsys.readouterr()
        token = captured.out.strip()
        assert token.startswith("bst_")
        assert "shown only this once" in captured.err
        # The token works against the running Bastion, which shares the store.
        monkeypatch.setenv("BASTION_TOKEN", token)
        assert main(["approvals", "list"]) == 0
        capsys.readouterr()

        assert main(["tokens", "list", "--data-dir", data_dir]) == 0
        out = capsys.readouterr().out
        (record,) = admin.store.list_tokens()
        assert record.id in out and "bob" in out and "active" in out and "ci" in out
        assert token not in out and record.digest not in out
        expires = record.expires_at
        assert expires is not None
        assert timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30)

        assert main(["tokens", "revoke", record.id, "--data-dir", data_dir]) == 0
        assert main(["tokens", "revoke", record.id, "--data-dir", data_dir]) == 1
        capsys.readouterr()
        assert main(["approvals", "list"]) == 1
        assert "refused the token" in capsys.readouterr().err
        assert main(["tokens", "list", "--data-dir", data_dir]) == 0
        assert "revoked" in capsys.readouterr().out

    def test_never_expiring_tokens_and_a_configured_store(
        self, admin: RunningAdmin, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        config = tmp_path / "bastion.yaml"
        config.write_text(f"data_dir: {tmp_path / 'data'}\nstate:\n  store: other.db\n")
        assert (
            main(["tokens", "create", "--user", "alice", "--ttl", "never", "-c", str(config)]) == 0
        )
        capsys.readouterr()
        assert (tmp_path / "data" / "other.db").exists()
        assert admin.store.list_tokens() == []  # not the default store
        assert main(["tokens", "list", "--config", str(config)]) == 0
        assert "never" in capsys.readouterr().out

    def test_tokens_are_only_for_password_users(
        self, admin: RunningAdmin, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        data_dir = str(tmp_path / "data")
        assert main(["tokens", "create", "--user", "nobody", "--data-dir", data_dir]) == 2
        assert "is not a password user" in capsys.readouterr().err
        assert admin.store.list_tokens() == []

    def test_usage_errors(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as caught:
            main(["tokens", "create", "--user", "bob", "--ttl", "forever"])
        assert caught.value.code == 2
        empty = str(tmp_path / "empty")
        assert main(["tokens", "list", "--data-dir", empty]) == 2
        assert "there is no state store" in capsys.readouterr().err
        assert not (tmp_path / "empty").exists()
        assert main(["tokens"]) == 2


class _Lines:
    """A non-terminal stdin holding some text."""

    def __init__(self, text: str) -> None:
        self._lines = text.splitlines(keepends=True)

    def isatty(self) -> bool:
        return False

    def readline(self) -> str:
        return self._lines.pop(0) if self._lines else ""

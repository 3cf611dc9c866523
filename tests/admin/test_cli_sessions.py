"""`bastion sessions list/kill`, run through the CLI's main() against a real admin API served by
uvicorn on 127.0.0.1 (in a thread), with real login, tokens and users; the sessions are a
stand-in (tests/integration/test_sessions.py ends real ones)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from admin.harness import SECRET, FakeSessions, Ready, password_user, summary
from admin.served import Cli, ServedAdmin
from bastion.admin.api import build_admin_app
from bastion.admin.auth import ApiAuthenticator
from bastion.approvals.service import ApprovalService, ApprovalSettings
from bastion.approvals.sqlite_store import SQLiteApprovalStore
from bastion.cli.sessions import age
from bastion.identity.directory import IdentityDirectory

USERS = [password_user("olga", "admin"), password_user("carol", "analysts")]


class RunningAdmin:
    """The admin app with sessions mounted, served over HTTP, and what it recorded."""

    def __init__(self, tmp_path: Path) -> None:
        self.store = SQLiteApprovalStore(tmp_path / "state.db")
        service = ApprovalService(self.store, ApprovalSettings())
        directory = IdentityDirectory(USERS, [], SECRET)
        self.sessions = FakeSessions(
            summary("a1b2c3d4e5f6", age=125, transaction="in transaction"),
            summary(
                "0f0f0f0f0f0f",
                age=7300,
                user="agent7",
                identity_kind="agent",
                application_name="\x1b[2Jreport\u202egnp.exe",
                waiting="approval 12",
                statements=31,
            ),
        )
        self.recorded: list[tuple[str, dict[str, object]]] = []
        app = build_admin_app(
            Ready(),
            approvals=service,
            auth=ApiAuthenticator(service, lambda: directory),
            sessions=self.sessions,
            record_admin=lambda action, payload: self.recorded.append((action, payload)),
        )
        self.served = ServedAdmin(app)

    def close(self) -> None:
        self.served.close()
        self.store.close()


@pytest.fixture
def admin(tmp_path: Path, cli: Cli) -> Iterator[RunningAdmin]:
    running = RunningAdmin(tmp_path)
    cli.use(running.served.url)
    yield running
    running.close()


@pytest.fixture
def olga(admin: RunningAdmin, cli: Cli) -> Cli:
    """The command line, logged in as an operator."""
    assert cli.login("olga").code == 0
    return cli


class TestList:
    def test_a_table_of_the_sessions(self, olga: Cli) -> None:
        listed = olga("sessions", "list")
        assert listed.code == 0
        header, older, newer = listed.out.splitlines()
        assert header.split() == [
            "ID",
            "USER",
            "KIND",
            "SOURCE",
            "TARGET",
            "APP",
            "STARTED",
            "AGE",
            "STMTS",
            "TRANSACTION",
            "WAITING",
        ]
        assert older.split()[:5] == ["0f0f0f0f0f0f", "agent7", "agent", "10.1.2.3:50123", "shop"]
        # What a client chose cannot act on the operator's terminal.
        assert "\x1b" not in older and "\u202e" not in older
        assert "\\u001b[2Jreport\\u202e..." in older  # escaped, then cut to the column
        assert "2h01m" in older and "31" in older and older.endswith("approval 12")
        assert "2m05s" in newer and "in transaction" in newer and newer.endswith("-")
        # Columns line up under their headers.
        assert newer.index("shop") == header.index("TARGET")
        assert older.index("agent7") == header.index("USER")

    def test_json(self, olga: Cli) -> None:
        listed = olga("sessions", "list", "--json")
        assert listed.code == 0
        document = json.loads(listed.out)
        ids = [s["session_id"] for s in document["sessions"]]
        assert ids == ["0f0f0f0f0f0f", "a1b2c3d4e5f6"]
        assert document["sessions"][0]["application_name"] == "\x1b[2Jreport\u202egnp.exe"

    def test_no_sessions(self, admin: RunningAdmin, olga: Cli) -> None:
        admin.sessions.live.clear()
        listed = olga("sessions", "list")
        assert listed.code == 0
        assert listed.out == "no client sessions\n"

    def test_a_non_operator_is_told_which_groups_may(self, admin: RunningAdmin, cli: Cli) -> None:
        assert cli.login("carol").code == 0
        listed = cli("sessions", "list")
        assert listed.code == 1
        assert listed.err.startswith("bastion sessions list: ") and "(admin," in listed.err

    def test_not_logged_in(self, admin: RunningAdmin, cli: Cli) -> None:
        listed = cli("sessions", "list")
        assert listed.code == 1
        assert "not logged in" in listed.err


class TestKill:
    def test_kill_ends_the_session_with_the_reason(self, admin: RunningAdmin, olga: Cli) -> None:
        killed = olga("sessions", "kill", "a1b2c3d4e5f6", "--reason", "holding locks, OPS-9")
        assert killed.code == 0
        assert killed.out == "ended session a1b2c3d4e5f6 of carol on shop from 10.1.2.3\n"
        assert admin.sessions.ended == [("a1b2c3d4e5f6", "holding locks, OPS-9")]
        assert admin.recorded[-1][0] == "session_terminated"
        assert admin.recorded[-1][1]["actor"] == "olga"

    def test_an_unknown_session(self, admin: RunningAdmin, olga: Cli) -> None:
        killed = olga("sessions", "kill", "ffffffffffff", "--reason", "x")
        assert killed.code == 1
        assert "there is no" in killed.err
        assert admin.sessions.ended == []

    def test_a_non_operator_cannot_kill(self, admin: RunningAdmin, cli: Cli) -> None:
        assert cli.login("carol").code == 0
        killed = cli("sessions", "kill", "a1b2c3d4e5f6", "--reason", "mine")
        assert killed.code == 1
        assert "operator groups" in killed.err
        assert admin.sessions.ended == []

    @pytest.mark.parametrize(
        "reason",
        [[], ["--reason", " "], ["--reason", "x" * 201]],
    )
    def test_a_reason_is_required(self, admin: RunningAdmin, cli: Cli, reason: list[str]) -> None:
        killed = cli("sessions", "kill", "a1b2c3d4e5f6", *reason)
        assert killed.code == 2
        assert "--reason" in killed.err
        assert admin.sessions.ended == []

    def test_without_a_subcommand_usage(self, cli: Cli) -> None:
        usage = cli("sessions")
        assert usage.code == 2
        assert "kill" in usage.err


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0s"), (59.9, "59s"), (61, "1m01s"), (3600, "1h00m"), (90061, "1d01h")],
)
def test_age(seconds: float, shown: str) -> None:
    assert age(seconds) == shown

"""`bastion sessions list/kill`, run through the CLI's main() against a real admin API served by
uvicorn on 127.0.0.1 (in a thread), with real login, tokens and users; the sessions are a
stand-in (tests/integration/test_sessions.py ends real ones)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from admin.test_sessions_api import FakeSessions, summary
from bastion.admin.api import build_admin_app
from bastion.admin.auth import ApiAuthenticator
from bastion.admin.server import AdminServer
from bastion.approvals.service import ApprovalService, ApprovalSettings
from bastion.approvals.sqlite_store import SQLiteApprovalStore
from bastion.cli.main import main
from bastion.cli.sessions import age
from bastion.identity.directory import IdentityDirectory
from bastion.identity.records import UserRecord
from bastion.identity.scram import make_verifier

SECRET = b"s" * 32
USERS = [
    UserRecord(name="olga", groups=("admin",), scram=make_verifier("olga-pw")),
    UserRecord(name="carol", groups=("analysts",), scram=make_verifier("carol-pw")),
]


class Ready:
    accepting = True


class RunningAdmin:
    """The admin app with sessions mounted, served by AdminServer on a loop in a thread."""

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
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(app),), daemon=True)
        self._thread.start()
        assert self._started.wait(10), "the admin server did not start"
        self.url = f"http://127.0.0.1:{self.port}"

    async def _serve(self, app: object) -> None:
        server = AdminServer(app, "127.0.0.1", 0)  # type: ignore[arg-type]
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        await server.start()
        self.port = server.port
        self._started.set()
        await self._stop.wait()
        await server.stop()

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self.store.close()


@pytest.fixture
def admin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningAdmin]:
    running = RunningAdmin(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("BASTION_ADMIN_URL", running.url)
    for name in ("BASTION_TOKEN", "BASTION_PASSWORD", "BASTION_USER"):
        monkeypatch.delenv(name, raising=False)
    yield running
    running.close()


def login(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], user: str) -> None:
    monkeypatch.setenv("BASTION_PASSWORD", f"{user}-pw")
    assert main(["login", user]) == 0
    capsys.readouterr()


class TestList:
    def test_a_table_of_the_sessions(
        self,
        admin: RunningAdmin,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        login(monkeypatch, capsys, "olga")
        assert main(["sessions", "list"]) == 0
        header, older, newer = capsys.readouterr().out.splitlines()
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

    def test_json(
        self,
        admin: RunningAdmin,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        login(monkeypatch, capsys, "olga")
        assert main(["sessions", "list", "--json"]) == 0
        listed = json.loads(capsys.readouterr().out)
        ids = [s["session_id"] for s in listed["sessions"]]
        assert ids == ["0f0f0f0f0f0f", "a1b2c3d4e5f6"]
        assert listed["sessions"][0]["application_name"] == "\x1b[2Jreport\u202egnp.exe"

    def test_no_sessions(
        self,
        admin: RunningAdmin,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        admin.sessions.live.clear()
        login(monkeypatch, capsys, "olga")
        assert main(["sessions", "list"]) == 0
        assert capsys.readouterr().out == "no client sessions\n"

    def test_a_non_operator_is_told_which_groups_may(
        self,
        admin: RunningAdmin,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        login(monkeypatch, capsys, "carol")
        assert main(["sessions", "list"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("bastion sessions list: ") and "(admin," in err

    def test_not_logged_in(self, admin: RunningAdmin, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["sessions", "list"]) == 1
        assert "not logged in" in capsys.readouterr().err


class TestKill:
    def test_kill_ends_the_session_with_the_reason(
        self,
        admin: RunningAdmin,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        login(monkeypatch, capsys, "olga")
        code = main(["sessions", "kill", "a1b2c3d4e5f6", "--reason", "holding locks, OPS-9"])
        assert code == 0
        out = capsys.readouterr().out
        assert out == "ended session a1b2c3d4e5f6 of carol on shop from 10.1.2.3\n"
        assert admin.sessions.ended == [("a1b2c3d4e5f6", "holding locks, OPS-9")]
        assert admin.recorded[-1][0] == "session_terminated"
        assert admin.recorded[-1][1]["actor"] == "olga"

    def test_an_unknown_session(
        self,
        admin: RunningAdmin,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        login(monkeypatch, capsys, "olga")
        assert main(["sessions", "kill", "ffffffffffff", "--reason", "x"]) == 1
        assert "there is no" in capsys.readouterr().err
        assert admin.sessions.ended == []

    def test_a_non_operator_cannot_kill(
        self,
        admin: RunningAdmin,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        login(monkeypatch, capsys, "carol")
        assert main(["sessions", "kill", "a1b2c3d4e5f6", "--reason", "mine"]) == 1
        assert "operator groups" in capsys.readouterr().err
        assert admin.sessions.ended == []

    @pytest.mark.parametrize(
        "argv",
        [
            ["sessions", "kill", "a1b2c3d4e5f6"],
            ["sessions", "kill", "a1b2c3d4e5f6", "--reason", " "],
            ["sessions", "kill", "a1b2c3d4e5f6", "--reason", "x" * 201],
        ],
    )
    def test_a_reason_is_required(
        self, admin: RunningAdmin, argv: list[str], capsys: pytest.CaptureFixture[str]
    ) -> None:
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2
        assert "--reason" in capsys.readouterr().err
        assert admin.sessions.ended == []

    def test_without_a_subcommand_usage(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert main(["sessions"]) == 2
        assert "kill" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0s"), (59.9, "59s"), (61, "1m01s"), (3600, "1h00m"), (90061, "1d01h")],
)
def test_age(seconds: float, shown: str) -> None:
    assert age(seconds) == shown

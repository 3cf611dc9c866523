"""Approvals inside live sessions, end to end: a real Bastion, real psql and psycopg sessions, a
real server. Approvers act from another process (this test process, on the shared state store),
as `bastion approvals approve` does through another instance's admin API."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from bastion.approvals.model import ApprovalRequest, ApprovalState, Approver, Verdict
from bastion.approvals.sqlite_store import SQLiteApprovalStore
from bastion.demo.sample import SampleSummary
from support.asyncpg_client import asyncpg_connect
from support.bastion import DEFAULT_USERS, BastionProcess, free_port, running_bastion
from support.bastion import TestUser as User
from support.servers import PostgresEndpoint

from .conftest import shop_target, upstream_env

POLICY = """\
version: 1
default_effect: allow
rules:
  - id: deletes-need-approval
    match: {statements: [delete]}
    effect: require_approval
    reason: deleting rows needs a second pair of eyes
    approvers: {groups: [dba], hold_seconds: 20}
  - id: updates-need-approval-quickly
    match: {statements: [update]}
    effect: require_approval
    approvers: {groups: [dba], hold_seconds: 1}
"""
USERS = (
    *DEFAULT_USERS,
    User("dana", "dana-secret-1", ("dba",)),
    User("omar", "omar-secret-1", ("dba",)),
)
OMAR = Approver("omar", ("dba",))
GRANT_TTL = timedelta(minutes=5)


@pytest.fixture(scope="module")
def gated(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_endpoint: PostgresEndpoint,
    shop_db: tuple[str, SampleSummary],
) -> Iterator[BastionProcess]:
    workdir: Path = tmp_path_factory.mktemp("approvals")
    policy = workdir / "policy.yaml"
    policy.write_text(POLICY)
    extra = {
        "policy": str(policy),
        "audit": {"enabled": True},
        "approvals": {
            "poll_seconds": 0.1,
            "grant_seconds": 120,
            # Nobody listens there: every delivery fails, visibly.
            "notifications": [
                {
                    "kind": "webhook",
                    "url": f"http://127.0.0.1:{free_port()}/hook",
                    "secret": "env:HOOK_SECRET",
                    "retries": 0,
                    "timeout_seconds": 1,
                }
            ],
        },
    }
    target = shop_target(postgres_endpoint, shop_db[0])
    env = {**upstream_env(postgres_endpoint), "HOOK_SECRET": "s3cret-hook-key"}
    with running_bastion(
        workdir, [target], users=USERS, extra=extra, env=env, admin_port=0
    ) as proc:
        yield proc


@pytest.fixture
def store(gated: BastionProcess) -> Iterator[SQLiteApprovalStore]:
    opened = SQLiteApprovalStore(gated.data_dir / "state.db")
    yield opened
    opened.close()


@pytest.fixture
def victim(direct_dsn: str) -> Iterator[str]:
    with psycopg.connect(direct_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS approval_victim")
        conn.execute("CREATE TABLE approval_victim (id int PRIMARY KEY, note text)")
        conn.execute(
            "INSERT INTO approval_victim SELECT g, 'row ' || g FROM generate_series(1, 9) g"
        )
    yield "approval_victim"
    with psycopg.connect(direct_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS approval_victim")


def _ids(direct_dsn: str) -> list[int]:
    with psycopg.connect(direct_dsn) as conn:
        return [row[0] for row in conn.execute("SELECT id FROM approval_victim ORDER BY id")]


def _pending(
    store: SQLiteApprovalStore, statement: str, known: set[int] | None = None
) -> ApprovalRequest:
    """Wait for the pending request for `statement` to appear."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for request in store.list(states=(ApprovalState.PENDING,)):
            if request.statement == statement and (known is None or request.id not in known):
                return request
        time.sleep(0.05)
    raise AssertionError(f"no pending request for {statement!r}")


def _vote(
    store: SQLiteApprovalStore, request: ApprovalRequest, verdict: Verdict, comment: str = ""
) -> ApprovalRequest:
    return store.vote(request.id, OMAR, verdict, comment, datetime.now(UTC), GRANT_TTL)


def _in_background(work: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    results: list[Any] = []

    def run() -> None:
        try:
            results.append(work())
        except BaseException as exc:  # the test thread inspects it
            results.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, results


def _psql(gated: BastionProcess, user: str, password: str, *commands: str) -> subprocess.Popen[str]:
    args = ["psql", gated.dsn(user, password), "-X", "-v", "ON_ERROR_STOP=1"]
    for command in commands:
        args += ["-c", command]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_psql_statement_waits_and_runs_once_another_process_approves(
    gated: BastionProcess, store: SQLiteApprovalStore, victim: str, direct_dsn: str
) -> None:
    statement = f"DELETE FROM {victim} WHERE id = 1"
    client = _psql(
        gated, "dana", "dana-secret-1", "SET bastion.reason = 'TICKET-123: cleanup'", statement
    )
    request = _pending(store, statement)
    assert request.requester == "dana" and request.requester_groups == ("dba",)
    assert request.reason == "TICKET-123: cleanup"
    assert request.rule == "deletes-need-approval"
    assert request.policy_reason == "deleting rows needs a second pair of eyes"
    assert request.approver_groups == ("dba",) and request.target == "shop"
    assert request.source_address == "127.0.0.1"
    time.sleep(0.3)
    assert client.poll() is None, "the statement must wait for the decision"
    assert 1 in _ids(direct_dsn)
    _vote(store, request, Verdict.APPROVE, "looks right")
    stdout, stderr = client.communicate(timeout=15)
    assert client.returncode == 0, stderr
    assert "DELETE 1" in stdout
    assert f"approval required, request {request.id}, approvers: dba, waiting up to 20s" in stderr
    assert f"approval request {request.id} approved by omar" in stderr
    assert 1 not in _ids(direct_dsn)
    assert store.get(request.id).state is ApprovalState.EXECUTED  # type: ignore[union-attr]


def test_reason_never_reaches_the_server(gated: BastionProcess) -> None:
    with psycopg.connect(gated.dsn("alice", "alice-secret-1"), autocommit=True) as conn:
        conn.execute("SET bastion.reason = 'TICKET-9'")
        with pytest.raises(psycopg.errors.UndefinedObject):
            conn.execute("SHOW bastion.reason")


def test_denial_reaches_the_psycopg_session_with_the_approvers_comment(
    gated: BastionProcess, store: SQLiteApprovalStore, victim: str, direct_dsn: str
) -> None:
    with psycopg.connect(gated.dsn("dana", "dana-secret-1")) as conn:
        conn.execute("SELECT 1")  # a transaction block is open: the denial must fail it

        def delete() -> None:
            conn.execute(f"DELETE FROM {victim} WHERE id = %s", (2,))

        thread, results = _in_background(delete)
        request = _pending(store, f"DELETE FROM {victim} WHERE id = $1")
        assert request.parameters == ("2",)
        _vote(store, request, Verdict.DENY, "not during business hours")
        thread.join(15)
        (error,) = results
        assert isinstance(error, psycopg.errors.InsufficientPrivilege)
        assert f"request {request.id} denied by omar: not during business hours" in str(error)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        conn.rollback()
        assert conn.execute("SELECT 7").fetchone() == (7,)
    assert 2 in _ids(direct_dsn)


def test_inside_a_transaction_the_approved_statement_commits_with_it(
    gated: BastionProcess, store: SQLiteApprovalStore, victim: str, direct_dsn: str
) -> None:
    statement = f"DELETE FROM {victim} WHERE id = 3"
    client = _psql(
        gated,
        "dana",
        "dana-secret-1",
        "BEGIN",
        f"INSERT INTO {victim} VALUES (100, 'new')",
        statement,
        "COMMIT",
    )
    request = _pending(store, statement)
    _vote(store, request, Verdict.APPROVE)
    _, stderr = client.communicate(timeout=15)
    assert client.returncode == 0, stderr
    ids = _ids(direct_dsn)
    assert 3 not in ids and 100 in ids


def test_hold_timeout_then_approval_lets_the_same_statement_run_once(
    gated: BastionProcess, store: SQLiteApprovalStore, victim: str, direct_dsn: str
) -> None:
    statement = f"UPDATE {victim} SET note = 'approved' WHERE id = 4"
    dsn = gated.dsn("dana", "dana-secret-1")
    with psycopg.connect(dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.QueryCanceled) as timed_out:
            conn.execute(statement)
        request = _pending(store, statement)
        assert f"approval request {request.id} is still pending after 1s" in str(timed_out.value)
        _vote(store, request, Verdict.APPROVE)
        # The same identity, target and text, within the grant's lifetime: runs once...
        notices: list[str] = []
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        assert conn.execute(statement).rowcount == 1
        assert any(f"approval request {request.id} was approved earlier" in n for n in notices)
        # ...and only once: the next run needs a new approval.
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute(statement)
    assert store.get(request.id).state is ApprovalState.EXECUTED  # type: ignore[union-attr]
    with psycopg.connect(direct_dsn) as conn:
        row = conn.execute(f"SELECT note FROM {victim} WHERE id = 4").fetchone()
        assert row == ("approved",)


def test_a_grant_does_not_cover_other_literals_or_other_users(
    gated: BastionProcess, store: SQLiteApprovalStore, victim: str
) -> None:
    statement = f"UPDATE {victim} SET note = 'x' WHERE id = 5"
    with (
        psycopg.connect(gated.dsn("dana", "dana-secret-1"), autocommit=True) as conn,
        pytest.raises(psycopg.errors.QueryCanceled),
    ):
        conn.execute(statement)
    _vote(store, _pending(store, statement), Verdict.APPROVE)
    other_literal = f"UPDATE {victim} SET note = 'x' WHERE id = 6"
    for user, password, sql_text in (
        ("dana", "dana-secret-1", other_literal),
        ("alice", "alice-secret-1", statement),
    ):
        with (
            psycopg.connect(gated.dsn(user, password), autocommit=True) as conn,
            pytest.raises(psycopg.errors.QueryCanceled),
        ):
            conn.execute(sql_text)


@pytest.mark.parametrize("method", ["cancel", "disconnect"])
def test_cancel_or_disconnect_withdraws_the_request(
    gated: BastionProcess, store: SQLiteApprovalStore, victim: str, method: str, direct_dsn: str
) -> None:
    statement = f"DELETE FROM {victim} WHERE id = 7 AND '{method}' <> ''"
    conn = psycopg.connect(gated.dsn("dana", "dana-secret-1"), autocommit=True)
    thread, results = _in_background(lambda: conn.execute(statement))
    request = _pending(store, statement)
    if method == "cancel":
        conn.cancel()
        thread.join(15)
        (error,) = results
        assert isinstance(error, psycopg.errors.QueryCanceled)
        assert f"approval request {request.id} withdrawn" in str(error)
        assert conn.execute("SELECT 1").fetchone() == (1,)  # the session goes on
        conn.close()
    else:
        conn.pgconn.finish()  # the client goes away mid-wait
        thread.join(15)
    deadline = time.monotonic() + 10
    while store.get(request.id).state is not ApprovalState.WITHDRAWN:  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the request was not withdrawn"
        time.sleep(0.05)
    # Approving a withdrawn request is refused, and nothing ran.
    with pytest.raises(Exception, match="withdrawn"):
        _vote(store, request, Verdict.APPROVE)
    assert 7 in _ids(direct_dsn)


def test_requests_and_decisions_are_audited_and_failed_notifications_are_visible(
    gated: BastionProcess, store: SQLiteApprovalStore, victim: str
) -> None:
    api = f"http://127.0.0.1:{gated.admin_port}"
    login = httpx.post(f"{api}/v1/login", json={"user": "omar", "password": "omar-secret-1"})
    headers = {"Authorization": f"Bearer {login.json()['token']}"}
    statement = f"DELETE FROM {victim} WHERE id = 8"
    client = _psql(gated, "dana", "dana-secret-1", statement)
    request = _pending(store, statement)
    pending = [
        line
        for line in httpx.get(f"{api}/metrics").text.splitlines()
        if line.startswith("bastion_approvals_pending ")
    ]
    assert pending and float(pending[0].split()[1]) >= 1
    reply = httpx.post(
        f"{api}/v1/approvals/{request.id}/approve", json={"comment": "fine"}, headers=headers
    )
    assert reply.status_code == 200, reply.text
    _, stderr = client.communicate(timeout=15)
    assert client.returncode == 0, stderr

    def records(kind: str) -> list[dict[str, Any]]:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "bastion.cli.main",
                "audit",
                "search",
                "--kind",
                kind,
                "--json",
                "--limit",
                "1000",
                "--data-dir",
                str(gated.data_dir),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        found = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
        return [r.get("payload", r) for r in found]

    deadline = time.monotonic() + 10
    while True:
        mine = [r for r in records("approval") if r.get("request_id") == request.id]
        events = {r["event"] for r in mine}
        failures = [
            r
            for r in records("approval_notification")
            if r.get("request_id") == request.id and r.get("outcome") == "failed"
        ]
        if {"requested", "voted", "approved", "executed"} <= events and failures:
            break
        assert time.monotonic() < deadline, (events, failures)
        time.sleep(0.2)
    approved = next(r for r in mine if r["event"] == "approved")
    assert approved["actor"] == "omar" and approved["user"] == "dana"
    # The statement's own record names the approval that let it run.
    statements = [r for r in records("statement") if r.get("approval_id") == request.id]
    assert statements and statements[0]["outcome"] == "ok"
    metrics = httpx.get(f"{api}/metrics").text
    assert 'bastion_approval_notifications_total{channel="webhook-1",outcome="failed"}' in metrics
    assert 'bastion_approval_events_total{event="approved"}' in metrics
    assert "s3cret-hook-key" not in gated.log_text()


def test_psql_ctrl_c_withdraws_the_request(
    gated: BastionProcess, store: SQLiteApprovalStore, victim: str, direct_dsn: str
) -> None:
    statement = f"DELETE FROM {victim} WHERE id = 9"
    client = _psql(gated, "dana", "dana-secret-1", statement)
    request = _pending(store, statement)
    client.send_signal(signal.SIGINT)  # psql sends a CancelRequest, as on Ctrl-C
    _, stderr = client.communicate(timeout=15)
    assert client.returncode != 0
    assert "canceling statement due to user request" in stderr
    assert f"approval request {request.id} withdrawn" in stderr
    assert store.get(request.id).state is ApprovalState.WITHDRAWN  # type: ignore[union-attr]
    assert 9 in _ids(direct_dsn)


def test_asyncpg_prepared_statement_waits_for_approval(
    gated: BastionProcess, store: SQLiteApprovalStore, victim: str, direct_dsn: str
) -> None:
    async def run() -> str:
        conn = await asyncpg_connect(gated.dsn("dana", "dana-secret-1"))
        try:
            statement = await conn.prepare(f"DELETE FROM {victim} WHERE id = $1")
            await statement.fetchval(6)
            return str(statement.get_statusmsg())
        finally:
            await conn.close()

    thread, results = _in_background(lambda: asyncio.run(run()))
    request = _pending(store, f"DELETE FROM {victim} WHERE id = $1")
    assert request.parameters == ("6",)  # asyncpg sends int4 in binary: decoded for approvers
    _vote(store, request, Verdict.APPROVE)
    thread.join(15)
    assert results == ["DELETE 1"]
    assert 6 not in _ids(direct_dsn)

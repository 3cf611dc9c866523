"""Operators list and end client sessions of a real Bastion through its admin API and its command
line: the ended client gets 57P01 with the operator's reason, its open transaction is rolled back
on the server, other sessions carry on, and only operators may do it. Real PostgreSQL, real
psycopg clients, real HTTP, the real `bastion` command."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from bastion.demo.sample import SampleSummary
from support.admin_api import admin_cli, admin_url, login
from support.bastion import DEFAULT_USERS, BastionProcess, running_bastion
from support.bastion import TestUser as User
from support.servers import PostgresEndpoint

from .conftest import shop_target, upstream_env

USERS = (*DEFAULT_USERS, User("olga", "olga-secret-1", ("admin",)))
REASON = "runaway report, ticket OPS-7"


@pytest.fixture(scope="module")
def proc(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_endpoint: PostgresEndpoint,
    shop_db: tuple[str, SampleSummary],
) -> Iterator[BastionProcess]:
    workdir: Path = tmp_path_factory.mktemp("sessions")
    with running_bastion(
        workdir,
        [shop_target(postgres_endpoint, shop_db[0])],
        users=USERS,
        env=upstream_env(postgres_endpoint),
        admin_port=0,
    ) as running:
        yield running


@pytest.fixture
def victim(direct_dsn: str) -> Iterator[None]:
    with psycopg.connect(direct_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS sessions_victim")
        conn.execute("CREATE TABLE sessions_victim (id int PRIMARY KEY, v int NOT NULL)")
        conn.execute("INSERT INTO sessions_victim VALUES (1, 1)")
    yield
    with psycopg.connect(direct_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS sessions_victim")


def _by_app(sessions: list[dict[str, Any]], application_name: str) -> dict[str, Any]:
    (found,) = [s for s in sessions if s["application_name"] == application_name]
    return found


def _scrape(proc: BastionProcess) -> str:
    return httpx.get(f"{admin_url(proc)}/metrics").text


def test_operators_list_and_end_sessions(
    proc: BastionProcess, victim: None, direct_dsn: str, tmp_path: Path
) -> None:
    cli = admin_cli(proc, tmp_path, "olga-secret-1")
    doomed = psycopg.connect(proc.dsn("alice", application_name="it-doomed"))
    other = psycopg.connect(proc.dsn("agent7", application_name="it-other"), autocommit=True)
    try:
        # The doomed session holds a row lock in an open transaction.
        doomed.execute("UPDATE sessions_victim SET v = 100 WHERE id = 1")
        assert other.execute("SELECT 1").fetchone() == (1,)

        # Operators see both sessions, with who, where from and what state.
        olga = login(proc, "olga", "olga-secret-1")
        reply = httpx.get(f"{admin_url(proc)}/v1/sessions", headers=olga)
        assert reply.status_code == 200, reply.text
        listed = reply.json()["sessions"]
        doomed_row = _by_app(listed, "it-doomed")
        other_row = _by_app(listed, "it-other")
        assert doomed_row["user"] == "alice" and doomed_row["target"] == "shop"
        assert doomed_row["transaction"] == "in transaction"
        assert doomed_row["statements"] >= 1 and doomed_row["source_ip"] == "127.0.0.1"
        assert other_row["user"] == "agent7" and other_row["identity_kind"] == "agent"
        assert other_row["transaction"] == "idle"
        assert 0 <= doomed_row["age_seconds"] < 60
        session_id = doomed_row["session_id"]
        shown = httpx.get(f"{admin_url(proc)}/v1/sessions/{session_id}", headers=olga)
        assert shown.status_code == 200 and shown.json()["application_name"] == "it-doomed"

        # The metrics count the sessions of each target.
        assert 'bastion_sessions_active_by_target{target="shop"} 2.0' in _scrape(proc)

        # The command line lists them too.
        assert cli("login", "olga").returncode == 0
        table = cli("sessions", "list")
        assert table.returncode == 0, table.stderr
        assert session_id in table.stdout and other_row["session_id"] in table.stdout
        assert "in transaction" in table.stdout and "it-doomed" in table.stdout
        as_json = cli("sessions", "list", "--json")
        assert {s["session_id"] for s in json.loads(as_json.stdout)["sessions"]} >= {
            session_id,
            other_row["session_id"],
        }

        # Someone outside the operator groups may neither list nor end sessions.
        alice = login(proc, "alice", "alice-secret-1")
        assert httpx.get(f"{admin_url(proc)}/v1/sessions", headers=alice).status_code == 403
        refused = httpx.post(
            f"{admin_url(proc)}/v1/sessions/{session_id}/terminate",
            json={"reason": "mine"},
            headers=alice,
        )
        assert refused.status_code == 403
        assert "admin" in refused.json()["message"]

        # An operator ends the doomed session through the command line.
        killed = cli("sessions", "kill", session_id, "--reason", REASON)
        assert killed.returncode == 0, killed.stderr
        assert f"ended session {session_id} of alice on shop" in killed.stdout
        with pytest.raises(psycopg.errors.AdminShutdown) as ended:
            doomed.execute("SELECT 1")
        assert ended.value.sqlstate == "57P01"
        assert REASON in str(ended.value)

        # The other session carries on.
        assert other.execute("SELECT 2").fetchone() == (2,)
    finally:
        doomed.close()
        other.close()

    # The doomed transaction was rolled back: its lock is released and its update undone.
    with psycopg.connect(direct_dsn, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '10s'")
        row = conn.execute("UPDATE sessions_victim SET v = v + 10 WHERE id = 1 RETURNING v")
        assert row.fetchone() == (11,)

    # Both are gone from the list and from the gauge, and the ended one cannot be ended again.
    deadline = time.monotonic() + 5
    while remaining := httpx.get(f"{admin_url(proc)}/v1/sessions", headers=olga).json()["sessions"]:
        assert time.monotonic() < deadline, remaining
        time.sleep(0.05)
    assert "bastion_sessions_active_by_target{" not in _scrape(proc)
    again = httpx.post(
        f"{admin_url(proc)}/v1/sessions/{session_id}/terminate", json={"reason": "x"}, headers=olga
    )
    assert again.status_code == 404
    # The action is on the record, with who did it and why.
    records = [e for e in proc.log_events() if e.get("action") == "session_terminated"]
    assert [(r["actor"], r["session_id"], r["user"], r["reason"]) for r in records] == [
        ("olga", session_id, "alice", REASON)
    ]
    assert any(
        e.get("action") == "login" and e.get("user") == "olga" and e.get("outcome") == "ok"
        for e in proc.log_events()
    )

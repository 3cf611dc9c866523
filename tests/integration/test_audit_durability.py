"""The audit record's durability promises, end to end with real clients and real stores:

- sync mode: a statement's result reaches the client only once its record is stored, so even
  `kill -9` under load loses no record of a statement a client saw succeed, and the chain still
  verifies;
- a full queue (the store is down) makes new statements wait, then fail with a clear error;
  nothing runs unrecorded, and Bastion recovers by itself when the store returns.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bastion.demo.pgserver import ThrowawayPostgres
from bastion.demo.sample import SampleSummary
from support.bastion import BastionProcess
from support.cli import audit_cli
from support.servers import PostgresEndpoint, throwaway_postgres

from .conftest import running_shop_bastion, shop_target, upstream_env


def _audit(
    data_dir: Path, *args: str, store: str | None = None
) -> subprocess.CompletedProcess[str]:
    return audit_cli(data_dir, *args, *(["--store", store] if store else []))


def _records(data_dir: Path, kind: str, store: str | None = None) -> list[dict[str, Any]]:
    found = _audit(data_dir, "search", "--kind", kind, "--json", "--limit", "100000", store=store)
    assert found.returncode == 0, found.stderr
    rows = [json.loads(line) for line in found.stdout.splitlines() if line.strip()]
    return [row.get("payload", row) for row in rows]


@pytest.fixture(scope="module")
def audit_server() -> Iterator[ThrowawayPostgres]:
    with throwaway_postgres() as server:
        yield server


def test_sync_mode_stores_the_record_before_the_client_sees_the_result(
    tmp_path: Path, postgres_endpoint: PostgresEndpoint, shop_db: tuple[str, SampleSummary]
) -> None:
    extra = {"audit": {"enabled": True, "mode": "sync"}}
    with (
        running_shop_bastion(tmp_path, postgres_endpoint, shop_db, extra=extra) as proc,
        psycopg.connect(proc.dsn(application_name="sync-check"), autocommit=True) as conn,
    ):
        for n in range(5):
            assert conn.execute("SELECT %s::int", (n,)).fetchone() == (n,)
            # No waiting: the record is already stored when the result arrives.
            mine = [
                r
                for r in _records(proc.data_dir, "statement")
                if r.get("statement", "").startswith("SELECT $1::int")
            ]
            assert len(mine) == n + 1
        with conn.pipeline():  # pipelined statements each wait for their record too
            cursors = [conn.execute("SELECT %s::int + 100", (n,)) for n in range(10)]
        assert [c.fetchone() for c in cursors] == [(n + 100,) for n in range(10)]
    verify = _audit(proc.data_dir, "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_kill_9_under_load_loses_no_record_of_a_statement_a_client_saw_succeed(
    tmp_path: Path, postgres_endpoint: PostgresEndpoint, shop_db: tuple[str, SampleSummary]
) -> None:
    target = shop_target(postgres_endpoint, shop_db[0])
    proc = BastionProcess(
        workdir=tmp_path,
        targets=[target],
        env=upstream_env(postgres_endpoint),
        extra={"audit": {"enabled": True, "mode": "sync", "checkpoint_every": 50}},
    ).start()
    succeeded: dict[str, int] = {}
    stop = threading.Event()

    def client(name: str) -> None:
        count = 0
        try:
            with psycopg.connect(proc.dsn(application_name=name), autocommit=True) as conn:
                while not stop.is_set():
                    conn.execute("SELECT %s::text AS client", (name,))
                    count += 1  # only after the client saw the result
        except psycopg.Error:
            pass  # the proxy died under us: what counts is what succeeded before
        finally:
            succeeded[name] = count

    threads = [threading.Thread(target=client, args=(f"crash-{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    proc.process.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
    proc.process.wait(timeout=10)  # type: ignore[union-attr]
    stop.set()
    for thread in threads:
        thread.join(10)
    assert sum(succeeded.values()) > 20, succeeded

    sessions = {
        r["session_id"]: r["application_name"]
        for r in _records(proc.data_dir, "connection")
        if r.get("event") == "connect" and r.get("application_name", "").startswith("crash-")
    }
    recorded: dict[str, int] = dict.fromkeys(succeeded, 0)
    for record in _records(proc.data_dir, "statement"):
        name = sessions.get(record.get("session_id", ""))
        if name is not None and record.get("outcome") == "ok":
            recorded[name] += 1
    for name, count in succeeded.items():
        assert recorded[name] >= count, (name, recorded, succeeded)
    verify = _audit(proc.data_dir, "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def _statement_succeeds(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


@pytest.mark.parametrize("mode", ["buffered", "sync"])
def test_store_outage_fails_closed_and_recovers(
    tmp_path: Path,
    postgres_endpoint: PostgresEndpoint,
    shop_db: tuple[str, SampleSummary],
    audit_server: ThrowawayPostgres,
    mode: str,
) -> None:
    schema = f"audit_{mode}"
    extra = {
        "audit": {
            "enabled": True,
            "mode": mode,
            "store": _url(audit_server),
            "schema_name": schema,
            "queue_size": 10,
            "batch_size": 5,
            "wait_seconds": 1,
        }
    }
    with running_shop_bastion(tmp_path, postgres_endpoint, shop_db, extra=extra) as proc:
        dsn = proc.dsn()
        assert _statement_succeeds(dsn)
        audit_server.pause()
        try:
            errors: list[str] = []
            with psycopg.connect(dsn, autocommit=True) as conn:
                for _ in range(40):  # more than the queue holds
                    try:
                        conn.execute("SELECT 2")
                    except (psycopg.errors.InsufficientPrivilege, psycopg.errors.IoError) as exc:
                        errors.append(f"{exc.sqlstate}: {exc}")
                        break
            assert errors, "statements kept running while their records could not be kept"
            if mode == "buffered":
                # The queue took what it could hold; then statements waited and failed.
                assert errors[0].startswith("42501") and "no room for 1s" in errors[0]
            else:
                # Either the statement ran and its record failed to commit (the result is
                # withheld and the session closed), or the store was already known to be down
                # and the statement never ran.
                assert errors[0].startswith(("58030", "42501")), errors
                assert _refused_until(dsn, "audit.unavailable")
        finally:
            audit_server.resume()
        deadline = time.monotonic() + 30
        while not _statement_succeeds(dsn):
            assert time.monotonic() < deadline, "Bastion did not recover when the store returned"
            time.sleep(0.25)
    verify = _audit(proc.data_dir, "verify", "--schema", schema, store=_url(audit_server))
    assert verify.returncode == 0, verify.stdout + verify.stderr


def _refused_until(dsn: str, rule: str) -> bool:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
                conn.execute("SELECT 3")
        except psycopg.errors.InsufficientPrivilege as exc:
            if rule in str(exc):
                return True
        except psycopg.Error:
            pass
        time.sleep(0.2)
    return False


def _url(server: ThrowawayPostgres) -> str:
    return f"postgresql://{server.superuser}@{server.host}:{server.port}/postgres"

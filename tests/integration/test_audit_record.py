"""The proxy keeps the tamper-evident audit record: what clients ran lands in the store, the
chain verifies with `bastion audit verify`, and an edit made behind Bastion's back is named."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from pathlib import Path

import psycopg

from bastion.demo.sample import SampleSummary
from support.bastion import BastionProcess
from support.cli import audit_cli
from support.servers import PostgresEndpoint

from .conftest import running_shop_bastion


def _audit(proc: BastionProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return audit_cli(proc.data_dir, *args)


def test_statements_are_recorded_and_the_chain_verifies(
    tmp_path: Path, postgres_endpoint: PostgresEndpoint, shop_db: tuple[str, SampleSummary]
) -> None:
    with running_shop_bastion(
        tmp_path,
        postgres_endpoint,
        shop_db,
        extra={"audit": {"enabled": True, "checkpoint_every": 5}},
    ) as proc:
        with psycopg.connect(proc.dsn(application_name="audited")) as conn:
            for i in range(12):
                conn.execute("SELECT %s::int AS n, 'alice@example.com' AS literal", (i,))
            conn.execute("SELECT count(*) FROM customers WHERE email = 'bob@example.com'")
        time.sleep(0.5)  # the writer thread commits in the background
        assert proc.stop() == 0

    verify = _audit(proc, "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    found = _audit(proc, "search", "--user", "alice", "--kind", "statement", "--json")
    assert found.returncode == 0, found.stderr
    records = [json.loads(line) for line in found.stdout.splitlines() if line.strip()]
    assert len(records) >= 13
    text = found.stdout
    assert (
        "bob@example.com" not in text and "alice@example.com" not in text
    )  # literals never stored
    by_table = _audit(proc, "search", "--table", "customers", "--json")
    hits = [json.loads(line) for line in by_table.stdout.splitlines() if line.strip()]
    assert len(hits) == 1 and "customers" in json.dumps(hits[0])
    connections = _audit(proc, "search", "--kind", "connection", "--json")
    assert '"audited"' in connections.stdout or "audited" in connections.stdout

    # An edit made directly in the store is found and named.
    db = proc.data_dir / "audit.db"
    with sqlite3.connect(db) as store:
        tables = [r[0] for r in store.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        table = next(t for t in tables if "record" in t)
        columns = [r[1] for r in store.execute(f"PRAGMA table_info({table})")]
        payload = next(c for c in columns if "payload" in c)
        store.execute(
            f"UPDATE {table} SET {payload} = replace({payload}, 'alice', 'mallory') "
            f"WHERE seq = (SELECT min(seq) + 3 FROM {table})"
        )
    tampered = _audit(proc, "verify")
    assert tampered.returncode == 1
    assert "seq" in (tampered.stdout + tampered.stderr)


def test_scrubbed_text_and_parameters_keep_literals_but_not_secrets(
    tmp_path: Path, postgres_endpoint: PostgresEndpoint, shop_db: tuple[str, SampleSummary]
) -> None:
    with running_shop_bastion(
        tmp_path,
        postgres_endpoint,
        shop_db,
        extra={"audit": {"enabled": True, "statement_text": "scrubbed", "parameters": True}},
    ) as proc:
        with psycopg.connect(proc.dsn(), autocommit=True) as conn:
            conn.execute(
                "SELECT count(*) FROM customers WHERE city = 'Lisbon' "
                "OR email = 'carol.secret@example.com'"
            )
            conn.execute(
                "SELECT count(*) FROM customers WHERE id = %s OR email = %s",
                (42, "dave.private@example.net"),
            )
        time.sleep(0.5)
        assert proc.stop() == 0
    found = _audit(proc, "search", "--table", "customers", "--json")
    records = [json.loads(line) for line in found.stdout.splitlines() if line.strip()]
    payloads = [r.get("payload", r) for r in records]
    text = json.dumps(payloads)
    assert "Lisbon" in text  # literals are kept...
    assert "carol.secret@example.com" not in text  # ...but what the detectors find is not
    assert "dave.private@example.net" not in text
    with_params = [p for p in payloads if p.get("parameters")]
    assert with_params and with_params[0]["parameters"][0] == "42"

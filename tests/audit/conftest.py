"""Fixtures for the audit tests: both stores, a signing key, chain builders and a tamperer.

`any_store` runs a test against SQLite and against the real PostgreSQL (a private database made
for this test session and dropped after it, one fresh schema per test). `Tamper` edits a store
behind Bastion's back with plain SQL, the way an attacker with database access would.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bastion.audit.checkpoint import checkpoint_record
from bastion.audit.keys import AuditSigner
from bastion.audit.postgres_store import PostgresAuditStore
from bastion.audit.record import (
    KIND_STATEMENT,
    AuditRecord,
    ChainHead,
    chain_record,
    record_hash,
    ts_to_micros,
)
from bastion.audit.sqlite_store import SQLiteAuditStore
from bastion.audit.store import AuditStore
from support.servers import PostgresEndpoint, postgres_endpoint, scratch_database

__all__ = ["postgres_endpoint"]

BASE_TS = datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


@pytest.fixture(scope="session")
def audit_pg_dsn(postgres_endpoint: PostgresEndpoint) -> Iterator[str]:
    """A private database for this test session, dropped at its end."""
    with scratch_database(postgres_endpoint, "bastion_audit_test") as name:
        yield postgres_endpoint.dsn(dbname=name)


@pytest.fixture
def pg_schema() -> str:
    return f"audit_{secrets.token_hex(4)}"


@pytest.fixture
def signer() -> AuditSigner:
    return AuditSigner(Ed25519PrivateKey.generate())


@dataclass
class Tamper:
    """Direct SQL on a store: `?` placeholders, `{records}` and `{head}` for the table names."""

    execute_sql: Callable[[str, tuple[Any, ...]], int]
    ts_column: str
    ts_value: Callable[[datetime], Any]

    def run(self, statement: str, *params: Any) -> int:
        return self.execute_sql(statement, params)

    def set_payload(self, seq: int, payload_json: str) -> None:
        assert self.run("UPDATE {records} SET payload = ? WHERE seq = ?", payload_json, seq) == 1

    def delete(self, seq: int) -> None:
        assert self.run("DELETE FROM {records} WHERE seq = ?", seq) == 1

    def rehash(self, record: AuditRecord, prev_hash: str, seq: int | None = None) -> str:
        """Store `record`'s content at `seq` with a hash recomputed from `prev_hash`."""
        seq = record.seq if seq is None else seq
        new_hash = record_hash(prev_hash, seq, record.ts, record.kind, record.canonical_payload)
        self.run(
            f"UPDATE {{records}} SET payload = ?, kind = ?, {self.ts_column} = ?, prev_hash = ?, "
            "hash = ? WHERE seq = ?",
            record.canonical_payload,
            record.kind,
            self.ts_value(record.ts),
            prev_hash,
            new_hash,
            seq,
        )
        return new_hash


@dataclass
class StoreCase:
    name: str
    store: AuditStore
    tamper: Tamper
    reopen: Callable[[], AuditStore]


def sqlite_case(path: Path) -> StoreCase:
    store = SQLiteAuditStore(path)

    def execute(statement: str, params: tuple[Any, ...]) -> int:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            text = statement.format(records="records", head="chain_head")
            return conn.execute(text, params).rowcount
        finally:
            conn.close()

    tamper = Tamper(execute, "ts_us", ts_to_micros)
    return StoreCase("sqlite", store, tamper, lambda: SQLiteAuditStore(path))


def postgres_case(dsn: str, schema: str) -> StoreCase:
    store = PostgresAuditStore(dsn, schema=schema)

    def execute(statement: str, params: tuple[Any, ...]) -> int:
        text = statement.replace("?", "%s").format(
            records=f"{schema}.records", head=f"{schema}.chain_head"
        )
        with psycopg.connect(dsn, autocommit=True) as conn:
            return conn.execute(text.encode(), params).rowcount

    return StoreCase(
        "postgres",
        store,
        Tamper(execute, "ts", lambda ts: ts),
        lambda: PostgresAuditStore(dsn, schema=schema),
    )


@pytest.fixture(params=["sqlite", "postgres"])
def any_store(
    request: pytest.FixtureRequest, tmp_path: Path, pg_schema: str
) -> Iterator[StoreCase]:
    if request.param == "sqlite":
        case = sqlite_case(tmp_path / "audit.db")
    else:
        case = postgres_case(request.getfixturevalue("audit_pg_dsn"), pg_schema)
    try:
        yield case
    finally:
        case.store.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SQLiteAuditStore]:
    store = SQLiteAuditStore(tmp_path / "audit.db")
    try:
        yield store
    finally:
        store.close()


def statement_payload(index: int, **overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "session_id": f"s{index % 3}",
        "user": ["alice", "bob", "carol"][index % 3],
        "target": "shop" if index % 2 == 0 else "billing",
        "kind": "select",
        "statement": f"SELECT * FROM orders WHERE id = $1 -- {index}",
        "decision": "allow" if index % 4 else "deny",
        "rule": "analysts-read" if index % 4 else "no-writes",
        "outcome": "ok",
        "tables": ["public.orders"] if index % 2 == 0 else ["billing.invoices"],
        "rows": index,
    }
    payload.update(overrides)
    return payload


def build_chain(
    store: AuditStore,
    signer: AuditSigner | None,
    count: int,
    *,
    checkpoint_every: int = 10,
    seal: bool = True,
    start: datetime = BASE_TS,
) -> list[AuditRecord]:
    """Append `count` statement records (one a minute) with checkpoints, as the writer would.

    With `seal`, a last checkpoint covers the tail; returns every record appended.
    """
    head = store.head()
    previous = store.last("checkpoint")
    last_checkpoint = previous.seq if previous is not None else 0
    records: list[AuditRecord] = []
    for index in range(count):
        ts = start + timedelta(minutes=index)
        record = chain_record(head, ts, KIND_STATEMENT, statement_payload(index))
        records.append(record)
        head = ChainHead(record.seq, record.hash)
        if signer is not None and head.seq - last_checkpoint >= checkpoint_every:
            checkpoint = checkpoint_record(head, last_checkpoint, signer, ts)
            records.append(checkpoint)
            head, last_checkpoint = ChainHead(checkpoint.seq, checkpoint.hash), checkpoint.seq
    if seal and signer is not None and head.seq > last_checkpoint:
        records.append(checkpoint_record(head, last_checkpoint, signer, records[-1].ts))
    store.append(records)
    return records

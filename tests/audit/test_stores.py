"""Both stores behind the AuditStore protocol: append, read, search, prune, conflicts, schema."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from bastion.audit import postgres_store, sqlite_store
from bastion.audit.errors import AuditStoreError, ChainConflict
from bastion.audit.keys import AuditSigner
from bastion.audit.postgres_store import PostgresAuditStore
from bastion.audit.record import EMPTY_HEAD, GENESIS_HASH, AuditRecord, ChainHead, chain_record
from bastion.audit.sqlite_store import SQLiteAuditStore
from bastion.audit.store import PAGE_SIZE, Durability, open_store

from .conftest import BASE_TS, StoreCase, build_chain, statement_payload


def test_a_new_store_is_empty(any_store: StoreCase) -> None:
    store = any_store.store
    assert store.head() == EMPTY_HEAD
    assert store.last() is None
    assert store.get(1) is None
    assert list(store.iterate()) == []
    assert store.search() == []


def test_appended_records_read_back_identically(any_store: StoreCase, signer: AuditSigner) -> None:
    store = any_store.store
    records = build_chain(store, signer, 25, checkpoint_every=10)
    assert store.head() == ChainHead(records[-1].seq, records[-1].hash)
    assert list(store.iterate()) == records
    for record in store.iterate():
        assert record.payload_json == records[record.seq - 1].payload_json
        assert record.computed_hash() == record.hash
    assert store.last() == records[-1]
    assert store.last("checkpoint") == records[-1]
    assert store.last("statement") == records[-2]
    assert store.get(5) == records[4]
    assert list(store.iterate(from_seq=3, to_seq=5)) == records[2:5]


def test_iteration_pages_through_large_stores(any_store: StoreCase) -> None:
    count = PAGE_SIZE * 2 + 7
    build_chain(any_store.store, None, count)
    seqs = [record.seq for record in any_store.store.iterate()]
    assert seqs == list(range(1, count + 1))
    assert [r.seq for r in any_store.store.iterate(from_seq=count - 1)] == [count - 1, count]


@pytest.mark.parametrize("sizes", [(1, 3, 4, 5, 17), (64, 65, 150), (85, 1, 500)])
def test_batches_of_any_size_are_stored_whole_and_in_order(
    any_store: StoreCase, sizes: tuple[int, ...]
) -> None:
    # The SQLite store writes a batch as INSERTs of 64, 16, 4 and 1 rows: every remainder
    # must land, in order, with its searchable columns.
    store = any_store.store
    appended: list[AuditRecord] = []
    for size in sizes:
        appended += build_chain(store, None, size, start=BASE_TS + timedelta(days=len(appended)))
    assert list(store.iterate()) == appended
    assert [r.seq for r in appended] == list(range(1, sum(sizes) + 1))
    bob = [r for r in appended if r.payload["user"] == "bob"]
    assert store.search(user="bob") == bob
    assert store.search(table="invoices") == [
        r for r in appended if r.payload["target"] == "billing"
    ]


def test_search_filters(any_store: StoreCase, signer: AuditSigner) -> None:
    store = any_store.store
    build_chain(store, signer, 24, checkpoint_every=100)

    def seqs(**filters: object) -> list[int]:
        return [record.seq for record in store.search(**filters)]  # type: ignore[arg-type]

    assert seqs(user="bob") == [i + 1 for i in range(24) if i % 3 == 1]
    assert seqs(target="billing", decision="deny") == []
    assert seqs(decision="deny") == [1, 5, 9, 13, 17, 21]
    assert seqs(rule="no-writes", user="alice") == [1, 13]
    assert seqs(kind="checkpoint") == [25]
    assert seqs(table="orders") == [i + 1 for i in range(24) if i % 2 == 0]
    assert seqs(table="public.orders") == seqs(table="orders")
    assert seqs(table="invoices", user="alice") == [4, 10, 16, 22]
    assert seqs(table="rders") == []
    assert seqs(table="%") == []
    since = BASE_TS + timedelta(minutes=3)
    until = BASE_TS + timedelta(minutes=6)
    assert seqs(since=since, until=until, kind="statement") == [4, 5, 6]
    assert seqs(user="alice", limit=2) == [1, 4]
    assert seqs(user="alice", limit=2, descending=True) == [22, 19]


def test_an_append_that_does_not_continue_the_head_writes_nothing(any_store: StoreCase) -> None:
    store = any_store.store
    records = build_chain(store, None, 3)
    stale = chain_record(ChainHead(2, records[1].hash), BASE_TS, "admin", {"n": 1})
    with pytest.raises(ChainConflict) as raised:
        store.append([stale])
    assert (raised.value.seq, raised.value.hash) == (3, records[2].hash)
    forked = chain_record(ChainHead(3, GENESIS_HASH), BASE_TS, "admin", {"n": 1})
    with pytest.raises(ChainConflict):
        store.append([forked])
    assert store.head().seq == 3
    assert [r.seq for r in store.iterate()] == [1, 2, 3]


def test_a_batch_must_be_chained_internally(any_store: StoreCase) -> None:
    first = chain_record(EMPTY_HEAD, BASE_TS, "admin", {"n": 1})
    unrelated = chain_record(ChainHead(1, GENESIS_HASH), BASE_TS, "admin", {"n": 2})
    with pytest.raises(ValueError, match="not chained at seq 2"):
        any_store.store.append([first, unrelated])
    assert any_store.store.head() == EMPTY_HEAD


def test_prune_deletes_before_a_seq(any_store: StoreCase) -> None:
    build_chain(any_store.store, None, 10)
    assert any_store.store.prune(4) == 3
    assert [r.seq for r in any_store.store.iterate()][:2] == [4, 5]
    assert any_store.store.prune(4) == 0
    assert any_store.store.head().seq == 10


def test_reopening_keeps_records_and_the_schema(any_store: StoreCase) -> None:
    records = build_chain(any_store.store, None, 3)
    any_store.store.close()
    reopened = any_store.reopen()
    try:
        assert list(reopened.iterate()) == records
    finally:
        reopened.close()


def test_the_sqlite_store_is_private_wal_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "audit.db"
    SQLiteAuditStore(path, durability="sync").close()
    assert path.stat().st_mode & 0o077 == 0
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(1,)]
        conn.execute("INSERT INTO schema_version VALUES (?)", (sqlite_store.SCHEMA_VERSION + 1,))
        conn.commit()
    finally:
        conn.close()
    with pytest.raises(AuditStoreError, match="schema version 2"):
        SQLiteAuditStore(path)


def test_sqlite_synchronous_follows_the_durability_mode(tmp_path: Path) -> None:
    cases: list[tuple[Durability, int]] = [("buffered", 1), ("sync", 2)]
    for durability, expected in cases:
        store = SQLiteAuditStore(tmp_path / f"{durability}.db", durability=durability)
        try:
            level = store._run(lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0])
            assert level == expected  # NORMAL = 1, FULL = 2
        finally:
            store.close()


def test_a_missing_sqlite_store_is_not_created_when_reading(tmp_path: Path) -> None:
    with pytest.raises(AuditStoreError, match="no audit store"):
        SQLiteAuditStore(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


def test_open_store_picks_the_backend(tmp_path: Path, audit_pg_dsn: str, pg_schema: str) -> None:
    with pytest.raises(AuditStoreError, match="no audit store"):
        open_store(tmp_path / "a.db", create=False)
    store = open_store(tmp_path / "a.db", schema="ignored_for_sqlite")
    assert isinstance(store, SQLiteAuditStore)
    store.close()
    url = psycopg.conninfo.make_conninfo(audit_pg_dsn)
    params = psycopg.conninfo.conninfo_to_dict(url)
    as_url = f"postgresql://{params['user']}@{params['host']}:{params['port']}/{params['dbname']}"
    if params.get("password"):
        as_url += f"?password={params['password']}"
    pg = open_store(as_url, schema=pg_schema)
    assert isinstance(pg, PostgresAuditStore)
    assert "password" not in repr(pg)
    pg.close()


def test_the_postgres_schema_is_versioned(audit_pg_dsn: str, pg_schema: str) -> None:
    PostgresAuditStore(audit_pg_dsn, schema=pg_schema).close()
    with psycopg.connect(audit_pg_dsn, autocommit=True) as conn:
        version = conn.execute(f"SELECT version FROM {pg_schema}.schema_version").fetchall()
        assert version == [(1,)]
        conn.execute(
            f"INSERT INTO {pg_schema}.schema_version VALUES ({postgres_store.SCHEMA_VERSION + 1})"
        )
    with pytest.raises(AuditStoreError, match="has version 2"):
        PostgresAuditStore(audit_pg_dsn, schema=pg_schema)


def test_postgres_schema_names_are_checked(audit_pg_dsn: str) -> None:
    with pytest.raises(ValueError, match="schema names"):
        PostgresAuditStore(audit_pg_dsn, schema='x"; DROP TABLE y; --')


def test_an_unreachable_postgres_store_fails_without_leaking_the_password() -> None:
    conninfo = "host=127.0.0.1 port=1 user=u password=hunter2 dbname=d connect_timeout=1"
    with pytest.raises(AuditStoreError) as raised:
        PostgresAuditStore(conninfo)
    assert "hunter2" not in str(raised.value)


def test_the_postgres_store_reconnects_after_its_connection_dies(
    audit_pg_dsn: str, pg_schema: str
) -> None:
    store = PostgresAuditStore(audit_pg_dsn, schema=pg_schema)
    try:
        build_chain(store, None, 2)
        pid = store._connection().info.backend_pid
        with psycopg.connect(audit_pg_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(AuditStoreError):
            store.head()
        assert store.head().seq == 2
        assert store._connection().info.backend_pid != pid
    finally:
        store.close()


def test_payloads_with_unicode_and_numbers_survive_both_stores(any_store: StoreCase) -> None:
    payload = statement_payload(0, statement="SELECT 'héllo ✓'", ratio=1e100, big=2**60)
    record = chain_record(EMPTY_HEAD, BASE_TS, "statement", payload)
    any_store.store.append([record])
    stored = any_store.store.get(1)
    assert stored is not None
    assert stored.payload == payload
    assert stored.computed_hash() == record.hash

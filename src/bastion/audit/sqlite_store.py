"""SQLiteAuditStore: the embedded audit store, one SQLite file in WAL mode.

One table holds the records: the searchable values (user, target, decision, rule, tables, kind,
ts) in indexed columns next to the payload's canonical JSON text, which is exactly what was
hashed. A one-row `chain_head` table holds the seq and hash the next record must follow, so
deleting the newest records while Bastion runs leaves a visible gap instead of a silently
shortened chain. The schema is created and upgraded by numbered migrations recorded in
`schema_version`.

Each thread gets its own connection (WAL lets readers run beside the writer). Appends take the
write lock first (BEGIN IMMEDIATE), so processes sharing the file cannot fork the chain.
`synchronous` is NORMAL in buffered mode (a power loss may lose the last transactions, never
corrupt the file) and FULL in sync mode (a commit is on disk before it is acknowledged).
Connections, transactions and migrations are `bastion.store.sqlite`'s plumbing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from bastion.audit.errors import AuditStoreError, ChainConflict
from bastion.audit.record import (
    GENESIS_HASH,
    AuditRecord,
    ChainHead,
    indexed_fields,
    load_payload,
    ts_from_micros,
    ts_to_micros,
)
from bastion.audit.store import PAGE_SIZE, Durability, SearchFilter, check_batch, like_escape
from bastion.store.sqlite import SQLiteConnections, create_private_file, write_transaction

BUSY_TIMEOUT_MS = 10_000
_T = TypeVar("_T")

# Each entry upgrades the schema from version (index) to version (index + 1).
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE records (
            seq INTEGER PRIMARY KEY,
            ts_us INTEGER NOT NULL,
            kind TEXT NOT NULL,
            username TEXT,
            target TEXT,
            decision TEXT,
            rule TEXT,
            tables TEXT,
            payload TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        )""",
        "CREATE INDEX records_ts ON records (ts_us)",
        "CREATE INDEX records_kind ON records (kind)",
        "CREATE INDEX records_username ON records (username)",
        "CREATE INDEX records_target ON records (target)",
        "CREATE INDEX records_decision ON records (decision)",
        "CREATE INDEX records_rule ON records (rule)",
        """CREATE TABLE chain_head (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            seq INTEGER NOT NULL,
            hash TEXT NOT NULL
        )""",
        f"INSERT INTO chain_head (id, seq, hash) VALUES (1, 0, '{GENESIS_HASH}')",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)
_COLUMNS = "seq, ts_us, kind, payload, prev_hash, hash"


class SQLiteAuditStore:
    """Audit records in the SQLite file at `path` (created unless `create` is False)."""

    def __init__(
        self, path: Path, *, durability: Durability = "buffered", create: bool = True
    ) -> None:
        self.path = Path(path)
        if not self.path.exists():
            if not create:
                raise AuditStoreError(f"no audit store at {self.path}")
            try:
                create_private_file(self.path)
            except OSError as exc:
                raise AuditStoreError(
                    f"cannot create audit store {self.path}: {exc.strerror}"
                ) from exc
        self._db = SQLiteConnections(
            self.path,
            name="audit store",
            error=AuditStoreError,
            synchronous="FULL" if durability == "sync" else "NORMAL",
            busy_timeout_ms=BUSY_TIMEOUT_MS,
            text_factory=_decode_text,
        )
        self._db.migrate(
            _MIGRATIONS,
            too_new=lambda message: AuditStoreError(
                message, hint="upgrade Bastion, or point it at another audit store"
            ),
        )

    def __repr__(self) -> str:
        return f"SQLiteAuditStore({str(self.path)!r})"

    # The protocol.

    def head(self) -> ChainHead:
        def query(conn: sqlite3.Connection) -> ChainHead:
            row = conn.execute("SELECT seq, hash FROM chain_head WHERE id = 1").fetchone()
            return ChainHead(int(row[0]), str(row[1]))

        return self._db.run(query)

    def append(self, records: Sequence[AuditRecord]) -> None:
        if not records:
            return
        check_batch(records)
        rows = [_row(record) for record in records]

        def write(conn: sqlite3.Connection) -> None:
            with write_transaction(conn):
                seq, hash = conn.execute("SELECT seq, hash FROM chain_head WHERE id = 1").fetchone()
                first = records[0]
                if first.seq != seq + 1 or first.prev_hash != hash:
                    raise ChainConflict(int(seq), str(hash))
                _insert_rows(conn, rows)
                conn.execute(
                    "UPDATE chain_head SET seq = ?, hash = ? WHERE id = 1",
                    (records[-1].seq, records[-1].hash),
                )

        self._db.run(write)

    def last(self, kind: str | None = None) -> AuditRecord | None:
        if kind is None:
            return self._one(f"SELECT {_COLUMNS} FROM records ORDER BY seq DESC LIMIT 1", ())
        return self._one(
            f"SELECT {_COLUMNS} FROM records WHERE kind = ? ORDER BY seq DESC LIMIT 1", (kind,)
        )

    def get(self, seq: int) -> AuditRecord | None:
        return self._one(f"SELECT {_COLUMNS} FROM records WHERE seq = ?", (seq,))

    def iterate(
        self, from_seq: int | None = None, to_seq: int | None = None
    ) -> Iterator[AuditRecord]:
        after = (from_seq if from_seq is not None else 1) - 1
        upper = to_seq if to_seq is not None else 2**63 - 1
        while True:
            page = self._all(
                f"SELECT {_COLUMNS} FROM records WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                (after, upper, PAGE_SIZE),
            )
            yield from page
            if len(page) < PAGE_SIZE:
                return
            after = page[-1].seq

    def search(
        self,
        *,
        user: str | None = None,
        target: str | None = None,
        decision: str | None = None,
        rule: str | None = None,
        table: str | None = None,
        kind: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
        descending: bool = False,
    ) -> list[AuditRecord]:
        query = SearchFilter(user, target, decision, rule, table, kind, since, until)
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in query.equalities():
            clauses.append(f"{column} = ?")
            params.append(value)
        if table is not None:
            clauses.append("(tables LIKE ? ESCAPE '\\' OR tables LIKE ? ESCAPE '\\')")
            name = like_escape(table)
            params += [f"%\n{name}\n%", f"%.{name}\n%"]
        if since is not None:
            clauses.append("ts_us >= ?")
            params.append(ts_to_micros(since))
        if until is not None:
            clauses.append("ts_us < ?")
            params.append(ts_to_micros(until))
        sql = f"SELECT {_COLUMNS} FROM records"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY seq DESC" if descending else " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return self._all(sql, tuple(params))

    def prune(self, before_seq: int) -> int:
        def delete(conn: sqlite3.Connection) -> int:
            with write_transaction(conn):
                return int(
                    conn.execute("DELETE FROM records WHERE seq < ?", (before_seq,)).rowcount
                )

        return self._db.run(delete)

    def close(self) -> None:
        self._db.close()

    # Queries.

    def _run(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        """`operation` on this thread's connection (tests read pragmas through it)."""
        return self._db.run(operation)

    def _one(self, sql: str, params: tuple[Any, ...]) -> AuditRecord | None:
        rows = self._all(sql, params)
        return rows[0] if rows else None

    def _all(self, sql: str, params: tuple[Any, ...]) -> list[AuditRecord]:
        return self._db.run(lambda conn: [_record(row) for row in conn.execute(sql, params)])


_INSERT = (
    "INSERT INTO records (seq, ts_us, kind, username, target, decision, rule, tables, payload,"
    " prev_hash, hash) VALUES "
)
_ROW_PLACEHOLDERS = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
# Rows per INSERT, largest first. sqlite3 lets go of the interpreter lock around every step of
# a statement, so `executemany` gave the lock up and took it back once per record, each time
# waiting for the event loop to yield it. A few statements of many rows each step once. Four
# sizes keep the statement texts few (sqlite3 caches them) and the parameters of the largest
# (11 x 64) under SQLite's oldest limit of 999.
_CHUNK_SIZES = (64, 16, 4, 1)
_INSERTS = {size: _INSERT + ", ".join([_ROW_PLACEHOLDERS] * size) for size in _CHUNK_SIZES}


def _insert_rows(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """INSERT `rows` (each one record's 11 column values) in as few statements as it takes."""
    done = 0
    for size in _CHUNK_SIZES:
        sql = _INSERTS[size]
        while len(rows) - done >= size:
            chunk = rows[done : done + size]
            conn.execute(sql, [value for row in chunk for value in row])
            done += size


def _decode_text(data: bytes) -> str:
    """Text columns as stored: bytes that are not UTF-8 survive to fail their hash check."""
    return data.decode("utf-8", "surrogateescape")


def _row(record: AuditRecord) -> tuple[Any, ...]:
    fields = indexed_fields(record.payload)
    tables = "\n" + "\n".join(fields.tables) + "\n" if fields.tables else None
    return (
        record.seq,
        ts_to_micros(record.ts),
        record.kind,
        fields.user,
        fields.target,
        fields.decision,
        fields.rule,
        tables,
        record.canonical_payload,
        record.prev_hash,
        record.hash,
    )


def _record(row: tuple[Any, ...]) -> AuditRecord:
    seq, ts_us, kind, payload_json, prev_hash, hash = row
    return AuditRecord(
        seq=int(seq),
        ts=ts_from_micros(int(ts_us)),
        kind=str(kind),
        payload=load_payload(payload_json),
        prev_hash=str(prev_hash),
        hash=str(hash),
        payload_json=str(payload_json),
    )

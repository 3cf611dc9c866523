"""PostgresAuditStore: the audit store shared by several Bastion instances (psycopg 3).

The records live in their own schema (default `bastion_audit`): a `records` table with indexed
columns for the searchable values beside the payload's canonical JSON text (kept as `text`, not
`jsonb`, because jsonb rewrites numbers and key order and the hash covers the exact bytes), a
one-row `chain_head` table, and `schema_version` for the numbered migrations, which run under an
advisory lock so instances starting together do not race.

Every append locks the chain head row (SELECT ... FOR UPDATE) inside its transaction and checks
that the batch continues it, so writers on different machines queue behind each other and the
chain stays linear; a writer that lost the race gets ChainConflict and re-chains. In buffered
mode appends commit with synchronous_commit off (the server may lose the last transactions on a
crash, exactly as the writer's queue may); sync mode uses the server's setting.

Each thread gets its own connection; a broken one is dropped and replaced on next use, so the
store recovers by itself when the server comes back. Connection strings are never logged or put
into errors: they may hold passwords. That plumbing is `bastion.store.postgres`'s.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg

from bastion.audit.errors import AuditStoreError, ChainConflict
from bastion.audit.record import (
    GENESIS_HASH,
    AuditRecord,
    ChainHead,
    indexed_fields,
    load_payload,
)
from bastion.audit.store import (
    DEFAULT_SCHEMA,
    PAGE_SIZE,
    Durability,
    SearchFilter,
    check_batch,
    like_escape,
)
from bastion.store.postgres import DEFAULT_CONNECT_TIMEOUT, PostgresConnections

# Each entry upgrades the schema from version (index) to version (index + 1); `{schema}` is
# replaced by the quoted schema name.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE {schema}.records (
            seq bigint PRIMARY KEY,
            ts timestamptz NOT NULL,
            kind text NOT NULL,
            username text,
            target text,
            decision text,
            rule text,
            tables text[] NOT NULL DEFAULT '{{}}',
            payload text NOT NULL,
            prev_hash text NOT NULL,
            hash text NOT NULL
        )""",
        "CREATE INDEX ON {schema}.records (ts)",
        "CREATE INDEX ON {schema}.records (kind, seq)",
        "CREATE INDEX ON {schema}.records (username)",
        "CREATE INDEX ON {schema}.records (target)",
        "CREATE INDEX ON {schema}.records (decision)",
        "CREATE INDEX ON {schema}.records (rule)",
        "CREATE INDEX ON {schema}.records USING gin (tables)",
        """CREATE TABLE {schema}.chain_head (
            id boolean PRIMARY KEY DEFAULT true CHECK (id),
            seq bigint NOT NULL,
            hash text NOT NULL
        )""",
        f"INSERT INTO {{schema}}.chain_head (seq, hash) VALUES (0, '{GENESIS_HASH}')",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)
_COLUMNS = "seq, ts, kind, payload, prev_hash, hash"
_INSERT_COLUMNS = (
    "seq, ts, kind, username, target, decision, rule, tables, payload, prev_hash, hash"
)


class PostgresAuditStore:
    """Audit records in `schema` of the PostgreSQL database `conninfo` names."""

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        durability: Durability = "buffered",
        connect_timeout: int = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        self._db = PostgresConnections(
            conninfo,
            schema=schema,
            schema_label="audit",
            name="audit store",
            error=AuditStoreError,
            connect_timeout=connect_timeout,
        )
        self.schema = schema
        self._synchronous_commit = durability == "sync"
        self._db.migrate(
            _MIGRATIONS,
            lock_key=f"audit:{schema}",
            too_new=lambda message: AuditStoreError(
                message, hint="upgrade Bastion, or point it at another schema"
            ),
        )

    def __repr__(self) -> str:
        return f"PostgresAuditStore({self._db.where!r}, schema={self.schema!r})"

    # The protocol.

    def head(self) -> ChainHead:
        def query(conn: psycopg.Connection[Any]) -> ChainHead:
            row = conn.execute(self._db.sql("SELECT seq, hash FROM {schema}.chain_head")).fetchone()
            assert row is not None
            return ChainHead(int(row[0]), str(row[1]))

        return self._db.run(query)

    def append(self, records: Sequence[AuditRecord]) -> None:
        if not records:
            return
        check_batch(records)
        rows = [_row(record) for record in records]
        lock = self._db.sql("SELECT seq, hash FROM {schema}.chain_head FOR UPDATE")
        copy = self._db.sql(f"COPY {{schema}}.records ({_INSERT_COLUMNS}) FROM STDIN")
        move = self._db.sql("UPDATE {schema}.chain_head SET seq = %s, hash = %s")

        def write(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                if not self._synchronous_commit:
                    conn.execute("SET LOCAL synchronous_commit = off")
                row = conn.execute(lock).fetchone()
                assert row is not None
                first = records[0]
                if first.seq != row[0] + 1 or first.prev_hash != row[1]:
                    raise ChainConflict(int(row[0]), str(row[1]))
                with conn.cursor() as cursor, cursor.copy(copy) as writer:
                    for values in rows:
                        writer.write_row(values)
                conn.execute(move, (records[-1].seq, records[-1].hash))

        self._db.run(write)

    def last(self, kind: str | None = None) -> AuditRecord | None:
        if kind is None:
            return self._one(f"SELECT {_COLUMNS} FROM {{schema}}.records ORDER BY seq DESC LIMIT 1")
        return self._one(
            f"SELECT {_COLUMNS} FROM {{schema}}.records WHERE kind = %s ORDER BY seq DESC LIMIT 1",
            (kind,),
        )

    def get(self, seq: int) -> AuditRecord | None:
        return self._one(f"SELECT {_COLUMNS} FROM {{schema}}.records WHERE seq = %s", (seq,))

    def iterate(
        self, from_seq: int | None = None, to_seq: int | None = None
    ) -> Iterator[AuditRecord]:
        after = (from_seq if from_seq is not None else 1) - 1
        upper = to_seq if to_seq is not None else 2**63 - 1
        query = (
            f"SELECT {_COLUMNS} FROM {{schema}}.records WHERE seq > %s AND seq <= %s "
            "ORDER BY seq LIMIT %s"
        )
        while True:
            page = self._all(query, (after, upper, PAGE_SIZE))
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
            clauses.append(f"{column} = %s")
            params.append(value)
        if table is not None:
            clauses.append(
                "EXISTS (SELECT 1 FROM unnest(tables) AS t(name) "
                "WHERE name = %s OR name LIKE %s ESCAPE '\\')"
            )
            params += [table, "%." + like_escape(table)]
        if since is not None:
            clauses.append("ts >= %s")
            params.append(since)
        if until is not None:
            clauses.append("ts < %s")
            params.append(until)
        text = f"SELECT {_COLUMNS} FROM {{schema}}.records"
        if clauses:
            text += " WHERE " + " AND ".join(clauses)
        text += " ORDER BY seq DESC" if descending else " ORDER BY seq"
        if limit is not None:
            text += " LIMIT %s"
            params.append(limit)
        return self._all(text, tuple(params))

    def prune(self, before_seq: int) -> int:
        statement = self._db.sql("DELETE FROM {schema}.records WHERE seq < %s")

        def delete(conn: psycopg.Connection[Any]) -> int:
            with conn.transaction():
                return conn.execute(statement, (before_seq,)).rowcount

        return self._db.run(delete)

    def close(self) -> None:
        self._db.close()

    def _connection(self) -> psycopg.Connection[Any]:
        """This thread's connection (tests end its backend to check recovery)."""
        return self._db.connection()

    # Queries.

    def _one(self, text: str, params: tuple[Any, ...] = ()) -> AuditRecord | None:
        rows = self._all(text, params)
        return rows[0] if rows else None

    def _all(self, text: str, params: tuple[Any, ...] = ()) -> list[AuditRecord]:
        statement = self._db.sql(text)
        return self._db.run(
            lambda conn: [_record(row) for row in conn.execute(statement, params).fetchall()]
        )


def _row(record: AuditRecord) -> tuple[Any, ...]:
    fields = indexed_fields(record.payload)
    return (
        record.seq,
        record.ts,
        record.kind,
        fields.user,
        fields.target,
        fields.decision,
        fields.rule,
        list(fields.tables),
        record.canonical_payload,
        record.prev_hash,
        record.hash,
    )


def _record(row: tuple[Any, ...]) -> AuditRecord:
    seq, ts, kind, payload_json, prev_hash, hash = row
    assert isinstance(ts, datetime)
    return AuditRecord(
        seq=int(seq),
        ts=ts.astimezone(UTC),
        kind=str(kind),
        payload=load_payload(payload_json),
        prev_hash=str(prev_hash),
        hash=str(hash),
        payload_json=str(payload_json),
    )

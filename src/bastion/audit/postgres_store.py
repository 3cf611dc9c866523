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
into errors: they may hold passwords.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

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

SCHEMA_VERSION = 1
DEFAULT_CONNECT_TIMEOUT = 5
_SCHEMA_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_T = TypeVar("_T")

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
        if not _SCHEMA_NAME_RE.match(schema):
            raise ValueError("audit schema names are lowercase letters, digits and '_'")
        try:
            params = conninfo_to_dict(conninfo)
        except psycopg.ProgrammingError:
            raise AuditStoreError("the audit store's connection string is invalid") from None
        if "connect_timeout" not in params:
            conninfo = make_conninfo(conninfo, connect_timeout=connect_timeout)
        self._conninfo = conninfo
        self._where = f"{params.get('host', 'localhost')}/{params.get('dbname', '')}"
        self.schema = schema
        self._ident = sql.Identifier(schema)
        self._synchronous_commit = durability == "sync"
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[psycopg.Connection[Any]] = []
        self._closed = False
        try:
            self._run(self._migrate)
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"PostgresAuditStore({self._where!r}, schema={self.schema!r})"

    # The protocol.

    def head(self) -> ChainHead:
        def query(conn: psycopg.Connection[Any]) -> ChainHead:
            row = conn.execute(self._sql("SELECT seq, hash FROM {schema}.chain_head")).fetchone()
            assert row is not None
            return ChainHead(int(row[0]), str(row[1]))

        return self._run(query)

    def append(self, records: Sequence[AuditRecord]) -> None:
        if not records:
            return
        check_batch(records)
        rows = [_row(record) for record in records]
        lock = self._sql("SELECT seq, hash FROM {schema}.chain_head FOR UPDATE")
        copy = self._sql(f"COPY {{schema}}.records ({_INSERT_COLUMNS}) FROM STDIN")
        move = self._sql("UPDATE {schema}.chain_head SET seq = %s, hash = %s")

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

        self._run(write)

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
        statement = self._sql("DELETE FROM {schema}.records WHERE seq < %s")

        def delete(conn: psycopg.Connection[Any]) -> int:
            with conn.transaction():
                return conn.execute(statement, (before_seq,)).rowcount

        return self._run(delete)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()

    # Connections, SQL and errors.

    def _sql(self, text: str) -> sql.Composed:
        # Literal braces in `text` are doubled; only {schema} is a placeholder.
        return sql.SQL(text).format(schema=self._ident)

    def _connection(self) -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is not None and not conn.closed:
            return conn
        with self._lock:
            if self._closed:
                raise AuditStoreError(f"audit store {self._where} is closed")
        conn = psycopg.connect(self._conninfo, autocommit=True)
        with self._lock:
            self._connections.append(conn)
        self._local.conn = conn
        return conn

    def _run(self, operation: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        conn: psycopg.Connection[Any] | None = None
        try:
            conn = self._connection()
            return operation(conn)
        except psycopg.Error as exc:
            if conn is not None and (conn.broken or conn.closed):
                self._discard(conn)
            raise AuditStoreError(
                f"audit store {self._where}: {type(exc).__name__}: {_first_line(exc)}"
            ) from exc

    def _discard(self, conn: psycopg.Connection[Any]) -> None:
        self._local.conn = None
        with self._lock:
            if conn in self._connections:
                self._connections.remove(conn)
        conn.close()

    def _one(self, text: str, params: tuple[Any, ...] = ()) -> AuditRecord | None:
        rows = self._all(text, params)
        return rows[0] if rows else None

    def _all(self, text: str, params: tuple[Any, ...] = ()) -> list[AuditRecord]:
        statement = self._sql(text)
        return self._run(
            lambda conn: [_record(row) for row in conn.execute(statement, params).fetchall()]
        )

    def _migrate(self, conn: psycopg.Connection[Any]) -> None:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"audit:{self.schema}",))
            conn.execute(self._sql("CREATE SCHEMA IF NOT EXISTS {schema}"))
            conn.execute(
                self._sql(
                    "CREATE TABLE IF NOT EXISTS {schema}.schema_version (version integer NOT NULL)"
                )
            )
            row = conn.execute(
                self._sql("SELECT coalesce(max(version), 0) FROM {schema}.schema_version")
            ).fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise AuditStoreError(
                    f"audit schema {self.schema} has version {version}; this Bastion knows "
                    f"versions up to {SCHEMA_VERSION}",
                    hint="upgrade Bastion, or point it at another schema",
                )
            for target in range(version, SCHEMA_VERSION):
                for statement in _MIGRATIONS[target]:
                    conn.execute(self._sql(statement))
                conn.execute(
                    self._sql("INSERT INTO {schema}.schema_version (version) VALUES (%s)"),
                    (target + 1,),
                )


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else ""


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

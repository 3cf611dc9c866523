"""PostgresApprovalStore: approval requests and admin tokens shared by several Bastion instances.

The tables live in their own schema (default `bastion_state`): `requests` (tuples as text[],
times as timestamptz), `votes` (one per approver and request) and `tokens` (digests only), plus
`schema_version` for the numbered migrations, which run under an advisory lock so instances
starting together do not race.

Every change locks the request rows it reads (SELECT ... FOR UPDATE) inside its transaction
before the rules in `rules.py` judge them, so two instances voting on or consuming the same
request queue behind each other and only one of them wins. Reads are single statements (votes
are aggregated beside their request), which gives each one a consistent snapshot.

Each thread gets its own connection; a broken one is dropped and replaced on the next call, so
the store recovers by itself when the server comes back. Connection strings are never logged,
repr'd or put into errors: they may hold passwords. Errors name the host and database only.
That plumbing is `bastion.store.postgres`'s.
(Annotations after the `list` method spell `builtins.list`, which that method's name hides.)
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from bastion.approvals import rules
from bastion.approvals.errors import RequestNotFound, StateStoreError
from bastion.approvals.model import (
    ApprovalRequest,
    ApprovalState,
    Approver,
    RequestDraft,
    TokenRecord,
    Verdict,
    Vote,
)
from bastion.approvals.rows import request_from_row, token_from_row
from bastion.store.postgres import DEFAULT_CONNECT_TIMEOUT, PostgresConnections

DEFAULT_SCHEMA = "bastion_state"

# Each entry upgrades the schema from version (index) to version (index + 1); `{schema}` is
# replaced by the quoted schema name.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE {schema}.requests (
            id bigserial PRIMARY KEY,
            requester text NOT NULL,
            requester_groups text[] NOT NULL,
            source_address text NOT NULL,
            target text NOT NULL,
            statement text NOT NULL,
            parameters text[] NOT NULL,
            fingerprint text NOT NULL,
            grant_key text NOT NULL,
            rule text NOT NULL,
            policy_reason text NOT NULL,
            reason text NOT NULL,
            approver_groups text[] NOT NULL,
            min_approvals integer NOT NULL,
            session_id text NOT NULL,
            state text NOT NULL,
            created_at timestamptz NOT NULL,
            expires_at timestamptz NOT NULL,
            decided_at timestamptz,
            grant_expires_at timestamptz,
            executed_at timestamptz,
            state_reason text NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX requests_state ON {schema}.requests (state, id)",
        "CREATE INDEX requests_grant_key ON {schema}.requests (grant_key, state)",
        """CREATE TABLE {schema}.votes (
            id bigserial PRIMARY KEY,
            request_id bigint NOT NULL REFERENCES {schema}.requests (id) ON DELETE CASCADE,
            approver text NOT NULL,
            verdict text NOT NULL,
            comment text NOT NULL,
            at timestamptz NOT NULL,
            UNIQUE (request_id, approver)
        )""",
        """CREATE TABLE {schema}.tokens (
            id text PRIMARY KEY,
            username text NOT NULL,
            digest text NOT NULL UNIQUE,
            label text NOT NULL,
            created_at timestamptz NOT NULL,
            expires_at timestamptz,
            revoked boolean NOT NULL DEFAULT false
        )""",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)
_DRAFT_COLUMNS = (
    "requester, requester_groups, source_address, target, statement, parameters, fingerprint, "
    "grant_key, rule, policy_reason, reason, approver_groups, min_approvals, session_id"
)
# One statement per read: the request's columns, then its votes as parallel arrays.
_SELECT_REQUESTS = (
    f"SELECT r.id, {', '.join('r.' + c for c in _DRAFT_COLUMNS.split(', '))}, r.state, "
    "r.created_at, r.expires_at, r.decided_at, r.grant_expires_at, r.executed_at, "
    "r.state_reason, v.approvers, v.verdicts, v.comments, v.ats "
    "FROM {schema}.requests AS r LEFT JOIN LATERAL ("
    "SELECT array_agg(approver ORDER BY id) AS approvers, array_agg(verdict ORDER BY id) "
    "AS verdicts, array_agg(comment ORDER BY id) AS comments, array_agg(at ORDER BY id) AS ats "
    "FROM {schema}.votes WHERE request_id = r.id) AS v ON true"
)
_TOKEN_COLUMNS = "id, username, digest, label, created_at, expires_at, revoked"
# Kept in step with rules.is_expired().
_EXPIRED = (
    "(state = 'pending' AND expires_at <= %(now)s) OR (state = 'approved' "
    "AND (grant_expires_at IS NULL OR grant_expires_at <= %(now)s))"
)


class PostgresApprovalStore:
    """Approval requests and admin tokens in `schema` of the database `conninfo` names."""

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str = DEFAULT_SCHEMA,
        connect_timeout: int = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        self._db = PostgresConnections(
            conninfo,
            schema=schema,
            schema_label="state store",
            name="approval state store",
            error=StateStoreError,
            connect_timeout=connect_timeout,
            summarize_outages=True,
        )
        self.schema = schema
        self._db.migrate(
            _MIGRATIONS,
            lock_key=f"state:{schema}",
            too_new=lambda message: StateStoreError(f"{message} (upgrade Bastion)"),
        )

    def __repr__(self) -> str:
        return f"PostgresApprovalStore({self._db.where!r}, schema={self.schema!r})"

    # Requests.

    def create(self, draft: RequestDraft, now: datetime) -> ApprovalRequest:
        statement = self._db.sql(
            f"INSERT INTO {{schema}}.requests ({_DRAFT_COLUMNS}, state, created_at, expires_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "RETURNING id"
        )
        values = (
            *_draft_values(draft),
            ApprovalState.PENDING.value,
            _aware(now),
            _aware(draft.expires_at),
        )

        def write(conn: psycopg.Connection[Any]) -> int:
            with conn.transaction():
                row = conn.execute(statement, values).fetchone()
                assert row is not None
                return int(row[0])

        return rules.pending_request(self._db.run(write), draft, now)

    def get(self, request_id: int) -> ApprovalRequest | None:
        return self.get_many([request_id]).get(request_id)

    def list(
        self, *, states: Sequence[ApprovalState] = (), limit: int = 100
    ) -> list[ApprovalRequest]:
        where, params = "true", tuple[Any, ...]()
        if states:
            where, params = "r.state = ANY(%s::text[])", ([ApprovalState(s).value for s in states],)
        return self._db.run(
            lambda conn: self._load(
                conn, f"{where} ORDER BY r.id DESC LIMIT %s", (*params, max(limit, 0))
            )
        )

    def get_many(self, request_ids: Sequence[int]) -> dict[int, ApprovalRequest]:
        if not request_ids:
            return {}
        ids = sorted(set(request_ids))
        found = self._db.run(lambda conn: self._load(conn, "r.id = ANY(%s::bigint[])", (ids,)))
        return {request.id: request for request in found}

    def vote(
        self,
        request_id: int,
        approver: Approver,
        verdict: Verdict,
        comment: str,
        now: datetime,
        grant_ttl: timedelta,
    ) -> ApprovalRequest:
        insert = self._db.sql(
            "INSERT INTO {schema}.votes (request_id, approver, verdict, comment, at) "
            "VALUES (%s, %s, %s, %s, %s)"
        )

        def write(conn: psycopg.Connection[Any]) -> ApprovalRequest:
            with conn.transaction():
                request = self._lock_one(conn, request_id)
                if request is None:
                    raise RequestNotFound(f"there is no approval request {request_id}")
                decided = rules.apply_vote(
                    request, approver, verdict, comment, _aware(now), grant_ttl
                )
                vote = decided.votes[-1]
                conn.execute(
                    insert,
                    (request_id, vote.approver, vote.verdict.value, vote.comment, vote.at),
                )
                return self._save(conn, request, decided)

        return self._db.run(write)

    def withdraw(self, request_id: int, reason: str, now: datetime) -> ApprovalRequest | None:
        def write(conn: psycopg.Connection[Any]) -> ApprovalRequest | None:
            with conn.transaction():
                request = self._lock_one(conn, request_id)
                if request is None or request.state is not ApprovalState.PENDING:
                    return None
                if rules.is_expired(request, now):
                    return None
                return self._save(conn, request, rules.withdrawn(request, reason, _aware(now)))

        return self._db.run(write)

    def find_pending(self, grant_key: str, now: datetime) -> ApprovalRequest | None:
        found = self._db.run(
            lambda conn: self._load(
                conn,
                "r.grant_key = %s AND r.state = 'pending' AND r.expires_at > %s "
                "ORDER BY r.id DESC LIMIT 1",
                (grant_key, _aware(now)),
            )
        )
        return found[0] if found else None

    def consume(self, request_id: int, now: datetime) -> ApprovalRequest | None:
        def write(conn: psycopg.Connection[Any]) -> ApprovalRequest | None:
            with conn.transaction():
                return self._consume(conn, request_id, _aware(now))

        return self._db.run(write)

    def consume_grant(self, grant_key: str, now: datetime) -> ApprovalRequest | None:
        candidates = self._db.sql(
            "SELECT id FROM {schema}.requests WHERE grant_key = %s AND state = 'approved' "
            "AND grant_expires_at > %s ORDER BY id"
        )

        def write(conn: psycopg.Connection[Any]) -> ApprovalRequest | None:
            with conn.transaction():
                # Oldest first; one another instance consumed meanwhile fails the check after
                # its lock, and the next candidate is tried.
                for (request_id,) in conn.execute(candidates, (grant_key, _aware(now))).fetchall():
                    consumed = self._consume(conn, int(request_id), _aware(now))
                    if consumed is not None:
                        return consumed
                return None

        return self._db.run(write)

    def expire(self, now: datetime) -> builtins.list[ApprovalRequest]:
        lock = self._db.sql(
            f"SELECT id FROM {{schema}}.requests WHERE {_EXPIRED} ORDER BY id FOR UPDATE"
        )

        def write(conn: psycopg.Connection[Any]) -> builtins.list[ApprovalRequest]:
            with conn.transaction():
                ids = [int(row[0]) for row in conn.execute(lock, {"now": _aware(now)}).fetchall()]
                if not ids:
                    return []
                requests = self._load(conn, "r.id = ANY(%s::bigint[]) ORDER BY r.id", (ids,))
                return [
                    self._save(conn, request, rules.expired(request, _aware(now)))
                    for request in requests
                    if rules.is_expired(request, now)
                ]

        return self._db.run(write)

    # Admin API tokens.

    def add_token(self, record: TokenRecord) -> None:
        statement = self._db.sql(
            f"INSERT INTO {{schema}}.tokens ({_TOKEN_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s)"
        )
        values = (
            record.id,
            record.user,
            record.digest,
            record.label,
            _aware(record.created_at),
            None if record.expires_at is None else _aware(record.expires_at),
            record.revoked,
        )

        def write(conn: psycopg.Connection[Any]) -> None:
            try:
                with conn.transaction():
                    conn.execute(statement, values)
            except psycopg.errors.UniqueViolation:
                raise StateStoreError(
                    f"token {record.id} was not added: its id or digest is already stored"
                ) from None

        self._db.run(write)

    def find_token(self, digest: str, now: datetime) -> TokenRecord | None:
        statement = self._db.sql(
            f"SELECT {_TOKEN_COLUMNS} FROM {{schema}}.tokens WHERE digest = %s AND NOT revoked "
            "AND (expires_at IS NULL OR expires_at > %s)"
        )

        def read(conn: psycopg.Connection[Any]) -> TokenRecord | None:
            row = conn.execute(statement, (digest, _aware(now))).fetchone()
            return None if row is None else _token(row)

        return self._db.run(read)

    def list_tokens(self) -> builtins.list[TokenRecord]:
        statement = self._db.sql(
            f"SELECT {_TOKEN_COLUMNS} FROM {{schema}}.tokens ORDER BY created_at, id"
        )
        return self._db.run(
            lambda conn: [_token(row) for row in conn.execute(statement).fetchall()]
        )

    def revoke_token(self, token_id: str) -> bool:
        statement = self._db.sql(
            "UPDATE {schema}.tokens SET revoked = true WHERE id = %s AND NOT revoked"
        )

        def write(conn: psycopg.Connection[Any]) -> bool:
            with conn.transaction():
                return conn.execute(statement, (token_id,)).rowcount == 1

        return self._db.run(write)

    def close(self) -> None:
        self._db.close()

    def _connection(self) -> psycopg.Connection[Any]:
        """This thread's connection (tests end its backend to check recovery)."""
        return self._db.connection()

    # Loading and saving requests (inside the caller's transaction).

    def _load(
        self, conn: psycopg.Connection[Any], where: str, params: Any
    ) -> builtins.list[ApprovalRequest]:
        """The requests matching `where` (on alias `r`, may end in ORDER BY / LIMIT)."""
        statement = self._db.sql(f"{_SELECT_REQUESTS} WHERE {where}")
        return [_request(row) for row in conn.execute(statement, params).fetchall()]

    def _lock_one(self, conn: psycopg.Connection[Any], request_id: int) -> ApprovalRequest | None:
        """The request, its row locked until the transaction ends; None if there is none."""
        lock = self._db.sql("SELECT id FROM {schema}.requests WHERE id = %s FOR UPDATE")
        if conn.execute(lock, (request_id,)).fetchone() is None:
            return None
        # Read after the lock: at READ COMMITTED this statement sees every committed vote.
        found = self._load(conn, "r.id = %s", (request_id,))
        return found[0] if found else None

    def _consume(
        self, conn: psycopg.Connection[Any], request_id: int, now: datetime
    ) -> ApprovalRequest | None:
        request = self._lock_one(conn, request_id)
        if request is None or not rules.usable_grant(request, now):
            return None
        return self._save(conn, request, rules.executed(request, now))

    def _save(
        self, conn: psycopg.Connection[Any], before: ApprovalRequest, after: ApprovalRequest
    ) -> ApprovalRequest:
        """Write `after`'s state, guarded by `before`'s (the row lock keeps it current)."""
        statement = self._db.sql(
            "UPDATE {schema}.requests SET state = %s, decided_at = %s, grant_expires_at = %s, "
            "executed_at = %s, state_reason = %s WHERE id = %s AND state = %s"
        )
        cursor = conn.execute(
            statement,
            (
                after.state.value,
                after.decided_at,
                after.grant_expires_at,
                after.executed_at,
                after.state_reason,
                after.id,
                before.state.value,
            ),
        )
        if cursor.rowcount != 1:
            raise StateStoreError(f"request {after.id} changed while it was being updated")
        return after


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("approval store times must be timezone-aware")
    return moment


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def _draft_values(draft: RequestDraft) -> tuple[Any, ...]:
    return (
        draft.requester,
        list(draft.requester_groups),
        draft.source_address,
        draft.target,
        draft.statement,
        list(draft.parameters),
        draft.fingerprint,
        draft.grant_key,
        draft.rule,
        draft.policy_reason,
        draft.reason,
        list(draft.approver_groups),
        draft.min_approvals,
        draft.session_id,
    )


def _request(row: Sequence[Any]) -> ApprovalRequest:
    approvers, verdicts, comments, ats = row[22:26]
    votes = tuple(
        Vote(approver, Verdict(verdict), comment, _utc(at))
        for approver, verdict, comment, at in zip(
            approvers or (), verdicts or (), comments or (), ats or (), strict=True
        )
    )
    return request_from_row(row, votes, tuple, _utc)


def _token(row: Sequence[Any]) -> TokenRecord:
    return token_from_row(row, _utc)

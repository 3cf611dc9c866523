"""SQLiteApprovalStore: approval requests and admin tokens in one private SQLite file (WAL).

Three tables: `requests` (tuples as JSON arrays, times as integer microseconds since the epoch,
UTC, so they round-trip exactly), `votes` (one per approver and request) and `tokens` (digests
only, never tokens). The schema is created and upgraded by numbered migrations recorded in
`schema_version`.

Every change runs in a BEGIN IMMEDIATE transaction: the write lock is taken before the request
is read, so two processes sharing the file (or two threads of one) serialize, and the rules in
`rules.py` always judge the current state. Reads run in a deferred transaction, which gives them
one consistent snapshot of a request and its votes. Each thread gets its own connection, since
the event loop calls the store from worker threads (that plumbing is `bastion.store.sqlite`'s).
`synchronous` is FULL: a consumed grant must stay consumed after a power loss, or its statement
could run twice. (Annotations after the `list` method spell `builtins.list`, which that method's
name hides.)
"""

from __future__ import annotations

import builtins
import json
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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
from bastion.store.sqlite import SQLiteConnections, create_private_file, write_transaction

BUSY_TIMEOUT_MS = 30_000
_CHUNK = 500  # ids per IN (...) list, well below SQLite's bound-parameter limit

# Each entry upgrades the schema from version (index) to version (index + 1).
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE requests (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            requester TEXT NOT NULL,
            requester_groups TEXT NOT NULL,
            source_address TEXT NOT NULL,
            target TEXT NOT NULL,
            statement TEXT NOT NULL,
            parameters TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            grant_key TEXT NOT NULL,
            rule TEXT NOT NULL,
            policy_reason TEXT NOT NULL,
            reason TEXT NOT NULL,
            approver_groups TEXT NOT NULL,
            min_approvals INTEGER NOT NULL,
            session_id TEXT NOT NULL,
            state TEXT NOT NULL,
            created_us INTEGER NOT NULL,
            expires_us INTEGER NOT NULL,
            decided_us INTEGER,
            grant_expires_us INTEGER,
            executed_us INTEGER,
            state_reason TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX requests_state ON requests (state, id)",
        "CREATE INDEX requests_grant_key ON requests (grant_key, state)",
        """CREATE TABLE votes (
            id INTEGER PRIMARY KEY,
            request_id INTEGER NOT NULL REFERENCES requests (id),
            approver TEXT NOT NULL,
            verdict TEXT NOT NULL,
            comment TEXT NOT NULL,
            at_us INTEGER NOT NULL,
            UNIQUE (request_id, approver)
        )""",
        """CREATE TABLE tokens (
            id TEXT PRIMARY KEY,
            username TEXT NOT NULL,
            digest TEXT NOT NULL UNIQUE,
            label TEXT NOT NULL,
            created_us INTEGER NOT NULL,
            expires_us INTEGER,
            revoked INTEGER NOT NULL DEFAULT 0
        )""",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)
_DRAFT_COLUMNS = (
    "requester, requester_groups, source_address, target, statement, parameters, fingerprint, "
    "grant_key, rule, policy_reason, reason, approver_groups, min_approvals, session_id"
)
_REQUEST_COLUMNS = (
    f"id, {_DRAFT_COLUMNS}, state, created_us, expires_us, decided_us, grant_expires_us, "
    "executed_us, state_reason"
)
_TOKEN_COLUMNS = "id, username, digest, label, created_us, expires_us, revoked"
# Kept in step with rules.is_expired().
_EXPIRED = (
    "(state = 'pending' AND expires_us <= :now) OR (state = 'approved' "
    "AND (grant_expires_us IS NULL OR grant_expires_us <= :now))"
)


class SQLiteApprovalStore:
    """Approval requests and admin tokens in the SQLite file at `path`, created if missing."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            create_private_file(self.path)
        except OSError as exc:
            raise StateStoreError(
                f"cannot create the approval state store {self.path}: {exc.strerror}"
            ) from exc
        self._db = SQLiteConnections(
            self.path,
            name="approval state store",
            error=StateStoreError,
            synchronous="FULL",
            busy_timeout_ms=BUSY_TIMEOUT_MS,
        )
        self._db.migrate(
            _MIGRATIONS, too_new=lambda message: StateStoreError(f"{message} (upgrade Bastion)")
        )

    def __repr__(self) -> str:
        return f"SQLiteApprovalStore({str(self.path)!r})"

    # Requests.

    def create(self, draft: RequestDraft, now: datetime) -> ApprovalRequest:
        values = (
            *_draft_values(draft),
            ApprovalState.PENDING.value,
            _us(now),
            _us(draft.expires_at),
        )

        def write(conn: sqlite3.Connection) -> int:
            with write_transaction(conn):
                cursor = conn.execute(
                    f"INSERT INTO requests ({_DRAFT_COLUMNS}, state, created_us, expires_us) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    values,
                )
                assert cursor.lastrowid is not None
                return cursor.lastrowid

        return rules.pending_request(self._db.run(write), draft, now)

    def get(self, request_id: int) -> ApprovalRequest | None:
        return self.get_many([request_id]).get(request_id)

    def list(
        self, *, states: Sequence[ApprovalState] = (), limit: int = 100
    ) -> list[ApprovalRequest]:
        where, params = "1 = 1", tuple[str, ...]()
        if states:
            where = f"state IN ({', '.join('?' * len(states))})"
            params = tuple(ApprovalState(state).value for state in states)
        return self._db.read(
            lambda conn: _load(conn, f"{where} ORDER BY id DESC LIMIT ?", (*params, max(limit, 0)))
        )

    def get_many(self, request_ids: Sequence[int]) -> dict[int, ApprovalRequest]:
        ids = sorted(set(request_ids))

        def read(conn: sqlite3.Connection) -> dict[int, ApprovalRequest]:
            found: dict[int, ApprovalRequest] = {}
            for chunk in _chunks(ids):
                marks = ", ".join("?" * len(chunk))
                found.update((r.id, r) for r in _load(conn, f"id IN ({marks})", tuple(chunk)))
            return found

        return self._db.read(read)

    def vote(
        self,
        request_id: int,
        approver: Approver,
        verdict: Verdict,
        comment: str,
        now: datetime,
        grant_ttl: timedelta,
    ) -> ApprovalRequest:
        def write(conn: sqlite3.Connection) -> ApprovalRequest:
            with write_transaction(conn):
                request = _load_one(conn, request_id)
                if request is None:
                    raise RequestNotFound(f"there is no approval request {request_id}")
                decided = rules.apply_vote(request, approver, verdict, comment, now, grant_ttl)
                vote = decided.votes[-1]
                conn.execute(
                    "INSERT INTO votes (request_id, approver, verdict, comment, at_us) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (request_id, vote.approver, vote.verdict.value, vote.comment, _us(vote.at)),
                )
                _save(conn, request, decided)
                return decided

        return self._db.run(write)

    def withdraw(self, request_id: int, reason: str, now: datetime) -> ApprovalRequest | None:
        def write(conn: sqlite3.Connection) -> ApprovalRequest | None:
            with write_transaction(conn):
                request = _load_one(conn, request_id)
                if request is None or request.state is not ApprovalState.PENDING:
                    return None
                if rules.is_expired(request, now):
                    return None
                return _save(conn, request, rules.withdrawn(request, reason, now))

        return self._db.run(write)

    def find_pending(self, grant_key: str, now: datetime) -> ApprovalRequest | None:
        found = self._db.read(
            lambda conn: _load(
                conn,
                "grant_key = ? AND state = 'pending' AND expires_us > ? ORDER BY id DESC LIMIT 1",
                (grant_key, _us(now)),
            )
        )
        return found[0] if found else None

    def consume(self, request_id: int, now: datetime) -> ApprovalRequest | None:
        def write(conn: sqlite3.Connection) -> ApprovalRequest | None:
            with write_transaction(conn):
                return _consume(conn, request_id, now)

        return self._db.run(write)

    def consume_grant(self, grant_key: str, now: datetime) -> ApprovalRequest | None:
        def write(conn: sqlite3.Connection) -> ApprovalRequest | None:
            with write_transaction(conn):
                rows = conn.execute(
                    "SELECT id FROM requests WHERE grant_key = ? AND state = 'approved' "
                    "AND grant_expires_us > ? ORDER BY id LIMIT 1",
                    (grant_key, _us(now)),
                ).fetchall()
                return _consume(conn, int(rows[0][0]), now) if rows else None

        return self._db.run(write)

    def expire(self, now: datetime) -> builtins.list[ApprovalRequest]:
        def write(conn: sqlite3.Connection) -> list[ApprovalRequest]:
            with write_transaction(conn):
                ids = [
                    int(row[0])
                    for row in conn.execute(
                        f"SELECT id FROM requests WHERE {_EXPIRED} ORDER BY id", {"now": _us(now)}
                    )
                ]
                changed: list[ApprovalRequest] = []
                for chunk in _chunks(ids):
                    marks = ", ".join("?" * len(chunk))
                    for request in _load(conn, f"id IN ({marks}) ORDER BY id", tuple(chunk)):
                        if rules.is_expired(request, now):
                            changed.append(_save(conn, request, rules.expired(request, now)))
                return changed

        return self._db.run(write)

    # Admin API tokens.

    def add_token(self, record: TokenRecord) -> None:
        values = (
            record.id,
            record.user,
            record.digest,
            record.label,
            _us(record.created_at),
            None if record.expires_at is None else _us(record.expires_at),
            int(record.revoked),
        )

        def write(conn: sqlite3.Connection) -> None:
            with write_transaction(conn):
                try:
                    conn.execute(
                        f"INSERT INTO tokens ({_TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        values,
                    )
                except sqlite3.IntegrityError:
                    raise StateStoreError(
                        f"token {record.id} was not added: its id or digest is already stored"
                    ) from None

        self._db.run(write)

    def find_token(self, digest: str, now: datetime) -> TokenRecord | None:
        def read(conn: sqlite3.Connection) -> TokenRecord | None:
            row = conn.execute(
                f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE digest = ? AND revoked = 0 "
                "AND (expires_us IS NULL OR expires_us > ?)",
                (digest, _us(now)),
            ).fetchone()
            return None if row is None else _token(row)

        return self._db.read(read)

    def list_tokens(self) -> builtins.list[TokenRecord]:
        return self._db.read(
            lambda conn: [
                _token(row)
                for row in conn.execute(
                    f"SELECT {_TOKEN_COLUMNS} FROM tokens ORDER BY created_us, id"
                )
            ]
        )

    def revoke_token(self, token_id: str) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            with write_transaction(conn):
                cursor = conn.execute(
                    "UPDATE tokens SET revoked = 1 WHERE id = ? AND revoked = 0", (token_id,)
                )
                return cursor.rowcount == 1

        return self._db.run(write)

    def close(self) -> None:
        self._db.close()


def _consume(conn: sqlite3.Connection, request_id: int, now: datetime) -> ApprovalRequest | None:
    request = _load_one(conn, request_id)
    if request is None or not rules.usable_grant(request, now):
        return None
    return _save(conn, request, rules.executed(request, now))


def _save(
    conn: sqlite3.Connection, before: ApprovalRequest, after: ApprovalRequest
) -> ApprovalRequest:
    """Write `after`'s state; guarded by `before`'s state, which the write lock keeps current."""
    cursor = conn.execute(
        "UPDATE requests SET state = ?, decided_us = ?, grant_expires_us = ?, executed_us = ?, "
        "state_reason = ? WHERE id = ? AND state = ?",
        (
            after.state.value,
            _maybe_us(after.decided_at),
            _maybe_us(after.grant_expires_at),
            _maybe_us(after.executed_at),
            after.state_reason,
            after.id,
            before.state.value,
        ),
    )
    if cursor.rowcount != 1:
        raise StateStoreError(f"request {after.id} changed while it was being updated")
    return after


def _load_one(conn: sqlite3.Connection, request_id: int) -> ApprovalRequest | None:
    found = _load(conn, "id = ?", (request_id,))
    return found[0] if found else None


def _load(conn: sqlite3.Connection, where: str, params: Any) -> list[ApprovalRequest]:
    """The requests matching `where` (which may end in ORDER BY / LIMIT), with their votes."""
    rows = conn.execute(f"SELECT {_REQUEST_COLUMNS} FROM requests WHERE {where}", params).fetchall()
    votes: dict[int, list[Vote]] = {int(row[0]): [] for row in rows}
    for chunk in _chunks(list(votes)):
        marks = ", ".join("?" * len(chunk))
        for request_id, approver, verdict, comment, at_us in conn.execute(
            "SELECT request_id, approver, verdict, comment, at_us FROM votes "
            f"WHERE request_id IN ({marks}) ORDER BY id",
            chunk,
        ):
            votes[int(request_id)].append(
                Vote(str(approver), Verdict(verdict), str(comment), _time(at_us))
            )
    return [_request(row, tuple(votes[int(row[0])])) for row in rows]


def _draft_values(draft: RequestDraft) -> tuple[Any, ...]:
    return (
        draft.requester,
        json.dumps(list(draft.requester_groups)),
        draft.source_address,
        draft.target,
        draft.statement,
        json.dumps(list(draft.parameters)),
        draft.fingerprint,
        draft.grant_key,
        draft.rule,
        draft.policy_reason,
        draft.reason,
        json.dumps(list(draft.approver_groups)),
        draft.min_approvals,
        draft.session_id,
    )


def _request(row: Sequence[Any], votes: tuple[Vote, ...]) -> ApprovalRequest:
    return request_from_row(row, votes, _strings, _time)


def _strings(text: str) -> tuple[Any, ...]:
    return tuple(json.loads(text))


def _token(row: Sequence[Any]) -> TokenRecord:
    return token_from_row(row, _time)


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    return (ids[start : start + _CHUNK] for start in range(0, len(ids), _CHUNK))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(moment: datetime) -> int:
    """Microseconds since the epoch: exact, and ordered like the times themselves."""
    if moment.tzinfo is None:
        raise ValueError("approval store times must be timezone-aware")
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _maybe_us(moment: datetime | None) -> int | None:
    return None if moment is None else _us(moment)


def _time(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(us))

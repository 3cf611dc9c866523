"""Both approval state stores behind the ApprovalStore protocol, against real databases."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest

from bastion.approvals.errors import (
    AlreadyVoted,
    ApprovalError,
    NotAnApprover,
    RequestClosed,
    RequestNotFound,
    SelfApproval,
    StateStoreError,
)
from bastion.approvals.model import (
    ApprovalRequest,
    ApprovalState,
    Approver,
    TokenRecord,
    Verdict,
    Vote,
)
from bastion.approvals.postgres_store import PostgresApprovalStore
from bastion.approvals.sqlite_store import SQLiteApprovalStore
from bastion.approvals.store import ApprovalStore

from .conftest import HOUR, NOW, StoreCase, make_draft

DBA = Approver("dave", ("dba",))
DBA2 = Approver("erin", ("dba", "oncall"))
DBA3 = Approver("frank", ("dba",))
_T = TypeVar("_T")


def approved(store: ApprovalStore, **overrides: object) -> ApprovalRequest:
    """A request created and approved by one DBA; its grant is usable for an hour."""
    request = store.create(make_draft(**overrides), NOW)
    decided = store.vote(request.id, DBA, Verdict.APPROVE, "ok", NOW, HOUR)
    assert decided.state is ApprovalState.APPROVED
    return decided


def race(count: int, action: Callable[[int], _T]) -> list[_T | BaseException]:
    """Run `action(0..count-1)` in as many threads, released together; results or errors."""
    barrier = threading.Barrier(count)
    results: list[_T | BaseException] = [RuntimeError("did not run")] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = action(index)
        except BaseException as exc:
            results[index] = exc

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


# Requests.


def test_a_created_request_reads_back_with_every_field(any_store: ApprovalStore) -> None:
    plus_two = timezone(timedelta(hours=2))
    draft = make_draft(
        statement="UPDATE t SET note = $1, other = $2 WHERE name = 'héllo ✓'",
        parameters=('it\'s "quoted" ✓', None),
        requester_groups=("analysts", "oncall"),
        approver_groups=(),
        reason="",
        min_approvals=3,
        expires_at=datetime(2024, 5, 1, 15, 30, 0, 1, tzinfo=plus_two),
    )
    created = any_store.create(draft, NOW)
    assert created.state is ApprovalState.PENDING
    assert created.created_at == NOW
    stored = any_store.get(created.id)
    assert stored == created
    assert stored is not None
    for name in type(draft).__dataclass_fields__:
        assert getattr(stored, name) == getattr(draft, name), name
    assert stored.parameters == ('it\'s "quoted" ✓', None)
    assert stored.expires_at == datetime(2024, 5, 1, 13, 30, 0, 1, tzinfo=UTC)
    assert stored.expires_at.utcoffset() == timedelta(0)
    assert stored.created_at.utcoffset() == timedelta(0)
    assert (stored.decided_at, stored.grant_expires_at, stored.executed_at) == (None, None, None)
    assert stored.votes == ()
    assert stored.state_reason == ""


def test_decided_times_and_votes_round_trip(any_store: ApprovalStore) -> None:
    request = any_store.create(make_draft(min_approvals=2), NOW)
    first = NOW + timedelta(microseconds=1)
    second = NOW + timedelta(minutes=3, microseconds=999_999)
    any_store.vote(request.id, DBA, Verdict.APPROVE, "looks fine", first, HOUR)
    decided = any_store.vote(request.id, DBA2, Verdict.APPROVE, "", second, HOUR)
    stored = any_store.get(request.id)
    assert stored == decided
    assert stored is not None
    assert stored.votes == (
        Vote("dave", Verdict.APPROVE, "looks fine", first),
        Vote("erin", Verdict.APPROVE, "", second),
    )
    assert stored.decided_at == second
    assert stored.grant_expires_at == second + HOUR


def test_ids_increase_and_unknown_ids_are_none(any_store: ApprovalStore) -> None:
    ids = [any_store.create(make_draft(), NOW).id for _ in range(3)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 3
    assert any_store.get(ids[-1] + 1000) is None


def test_list_is_newest_first_and_filters_by_state(any_store: ApprovalStore) -> None:
    first = any_store.create(make_draft(), NOW)
    second = approved(any_store)
    third = any_store.create(make_draft(), NOW)
    withdrawn = any_store.withdraw(third.id, "cancelled", NOW)
    assert withdrawn is not None
    fourth = any_store.create(make_draft(), NOW)

    assert [r.id for r in any_store.list()] == [fourth.id, third.id, second.id, first.id]
    assert [r.id for r in any_store.list(limit=2)] == [fourth.id, third.id]
    assert [r.id for r in any_store.list(states=[ApprovalState.PENDING])] == [fourth.id, first.id]
    both = any_store.list(states=[ApprovalState.APPROVED, ApprovalState.WITHDRAWN])
    assert [r.id for r in both] == [third.id, second.id]
    assert any_store.list(states=[ApprovalState.EXECUTED]) == []
    assert any_store.list()[2] == second  # votes come along


def test_get_many_returns_the_requests_that_exist(any_store: ApprovalStore) -> None:
    one = any_store.create(make_draft(), NOW)
    two = approved(any_store)
    assert any_store.get_many([]) == {}
    found = any_store.get_many([two.id, one.id, two.id, two.id + 1000])
    assert found == {one.id: one, two.id: two}


def test_get_many_handles_more_ids_than_one_query_takes(any_store: ApprovalStore) -> None:
    ids = [any_store.create(make_draft(), NOW).id for _ in range(3)]
    wanted = [*ids, *range(ids[-1] + 1, ids[-1] + 1200)]
    assert sorted(any_store.get_many(wanted)) == ids


# Votes.


def test_enough_distinct_approvals_approve(any_store: ApprovalStore) -> None:
    request = any_store.create(make_draft(min_approvals=2), NOW)
    once = any_store.vote(request.id, DBA, Verdict.APPROVE, "", NOW, HOUR)
    assert once.state is ApprovalState.PENDING
    with pytest.raises(AlreadyVoted, match=f"request {request.id}"):
        any_store.vote(request.id, DBA, Verdict.APPROVE, "again", NOW, HOUR)
    stored = any_store.get(request.id)
    assert stored is not None
    assert stored.state is ApprovalState.PENDING
    assert stored.approvals == ("dave",)
    later = NOW + timedelta(minutes=5)
    twice = any_store.vote(request.id, DBA2, Verdict.APPROVE, "", later, HOUR)
    assert twice.state is ApprovalState.APPROVED
    assert any_store.get(request.id) == twice
    assert twice.grant_expires_at == later + HOUR


def test_one_deny_decides(any_store: ApprovalStore) -> None:
    request = any_store.create(make_draft(min_approvals=2), NOW)
    any_store.vote(request.id, DBA, Verdict.APPROVE, "", NOW, HOUR)
    denied = any_store.vote(request.id, DBA2, Verdict.DENY, "use a soft delete", NOW, HOUR)
    assert denied.state is ApprovalState.DENIED
    assert denied.state_reason == "use a soft delete"
    assert denied.decided_at == NOW
    assert denied.grant_expires_at is None
    assert any_store.get(request.id) == denied
    with pytest.raises(RequestClosed, match="denied"):
        any_store.vote(request.id, DBA3, Verdict.APPROVE, "", NOW, HOUR)


@pytest.mark.parametrize("verdict", list(Verdict))
def test_refused_votes_change_nothing(any_store: ApprovalStore, verdict: Verdict) -> None:
    request = any_store.create(make_draft(), NOW)
    with pytest.raises(SelfApproval):
        any_store.vote(request.id, Approver("alice", ("dba",)), verdict, "", NOW, HOUR)
    with pytest.raises(NotAnApprover, match="dba"):
        any_store.vote(request.id, Approver("mallory", ("analysts",)), verdict, "", NOW, HOUR)
    with pytest.raises(RequestClosed, match="expired"):
        any_store.vote(request.id, DBA, verdict, "", request.expires_at, HOUR)
    with pytest.raises(RequestNotFound):
        any_store.vote(request.id + 1000, DBA, verdict, "", NOW, HOUR)
    assert any_store.get(request.id) == request


def test_votes_on_a_decided_request_are_refused(any_store: ApprovalStore) -> None:
    request = approved(any_store)
    with pytest.raises(RequestClosed, match="approved"):
        any_store.vote(request.id, DBA2, Verdict.DENY, "", NOW, HOUR)
    assert any_store.consume(request.id, NOW) is not None
    with pytest.raises(RequestClosed, match="executed"):
        any_store.vote(request.id, DBA2, Verdict.APPROVE, "", NOW, HOUR)


def test_racing_voters_approve_exactly_once(any_store_case: StoreCase) -> None:
    stores = [any_store_case.open(), any_store_case.open()]
    request = stores[0].create(make_draft(min_approvals=3), NOW)
    voters = [Approver(f"dba{index}", ("dba",)) for index in range(8)]

    results = race(
        8,
        lambda i: stores[i % 2].vote(request.id, voters[i], Verdict.APPROVE, "", NOW, HOUR),
    )
    accepted = [r for r in results if isinstance(r, ApprovalRequest)]
    refused = [r for r in results if not isinstance(r, ApprovalRequest)]
    assert len(accepted) == 3
    assert all(isinstance(error, RequestClosed) for error in refused), refused
    stored = stores[1].get(request.id)
    assert stored is not None
    assert stored.state is ApprovalState.APPROVED
    assert len(stored.approvals) == 3


def test_the_same_approver_racing_votes_once(any_store_case: StoreCase) -> None:
    stores = [any_store_case.open(), any_store_case.open()]
    request = stores[0].create(make_draft(min_approvals=2), NOW)
    results = race(6, lambda i: stores[i % 2].vote(request.id, DBA, Verdict.APPROVE, "", NOW, HOUR))
    assert sum(isinstance(r, ApprovalRequest) for r in results) == 1
    assert sum(isinstance(r, AlreadyVoted) for r in results) == 5
    stored = stores[0].get(request.id)
    assert stored is not None
    assert stored.approvals == ("dave",)


# Withdrawal, pending lookup and expiry.


def test_only_pending_requests_can_be_withdrawn(any_store: ApprovalStore) -> None:
    request = any_store.create(make_draft(), NOW)
    withdrawn = any_store.withdraw(request.id, "the client disconnected", NOW)
    assert withdrawn is not None
    assert withdrawn.state is ApprovalState.WITHDRAWN
    assert withdrawn.state_reason == "the client disconnected"
    assert any_store.get(request.id) == withdrawn
    assert any_store.withdraw(request.id, "again", NOW) is None

    grant = approved(any_store)
    assert any_store.withdraw(grant.id, "too late", NOW) is None
    assert any_store.get(grant.id) == grant
    lapsed = any_store.create(make_draft(), NOW)
    assert any_store.withdraw(lapsed.id, "after expiry", lapsed.expires_at) is None
    assert any_store.withdraw(lapsed.id + 1000, "unknown", NOW) is None


def test_find_pending_returns_the_newest_unexpired_request(any_store: ApprovalStore) -> None:
    key = make_draft().grant_key
    assert any_store.find_pending(key, NOW) is None
    soon = any_store.create(make_draft(expires_at=NOW + timedelta(minutes=1)), NOW)
    assert any_store.find_pending(key, NOW) == soon
    later = any_store.create(make_draft(expires_at=NOW + HOUR), NOW)
    other = any_store.create(make_draft(parameters=("8",)), NOW)
    assert other.grant_key != key
    assert any_store.find_pending(key, NOW) == later
    assert any_store.find_pending(key, NOW + HOUR) is None

    any_store.withdraw(later.id, "cancelled", NOW)
    assert any_store.find_pending(key, NOW) == soon
    assert any_store.find_pending(key, NOW + timedelta(minutes=1)) is None


def test_expire_moves_lapsed_requests_and_grants(any_store: ApprovalStore) -> None:
    soon = any_store.create(make_draft(expires_at=NOW + timedelta(minutes=10)), NOW)
    fresh = any_store.create(make_draft(expires_at=NOW + 2 * HOUR), NOW)
    short = any_store.create(make_draft(expires_at=NOW + 2 * HOUR), NOW)
    short = any_store.vote(short.id, DBA, Verdict.APPROVE, "", NOW, timedelta(minutes=20))
    long = approved(any_store)  # grant for an hour
    denied = any_store.create(make_draft(expires_at=NOW + timedelta(minutes=1)), NOW)
    any_store.vote(denied.id, DBA, Verdict.DENY, "no", NOW, HOUR)

    assert any_store.expire(NOW) == []
    moment = NOW + timedelta(minutes=20)
    expired = any_store.expire(moment)
    assert [r.id for r in expired] == [soon.id, short.id]
    assert all(r.state is ApprovalState.EXPIRED for r in expired)
    assert "no decision" in expired[0].state_reason
    assert "not used" in expired[1].state_reason
    assert expired[1].decided_at == short.decided_at  # the approval keeps its time
    assert any_store.get_many([soon.id, short.id]) == {r.id: r for r in expired}
    assert any_store.expire(moment) == []
    states = {r.id: r.state for r in any_store.list()}
    assert states[fresh.id] is ApprovalState.PENDING
    assert states[long.id] is ApprovalState.APPROVED
    assert states[denied.id] is ApprovalState.DENIED


# Consuming grants.


def test_a_grant_is_consumed_once(any_store: ApprovalStore) -> None:
    pending = any_store.create(make_draft(), NOW)
    assert any_store.consume(pending.id, NOW) is None
    grant = approved(any_store)
    used_at = NOW + timedelta(seconds=30)
    consumed = any_store.consume(grant.id, used_at)
    assert consumed is not None
    assert consumed.state is ApprovalState.EXECUTED
    assert consumed.executed_at == used_at
    assert any_store.get(grant.id) == consumed
    assert any_store.consume(grant.id, used_at) is None
    assert any_store.consume(grant.id + 1000, used_at) is None


def test_a_lapsed_grant_cannot_be_consumed(any_store: ApprovalStore) -> None:
    grant = approved(any_store)
    assert grant.grant_expires_at is not None
    assert any_store.consume(grant.id, grant.grant_expires_at) is None
    assert any_store.consume_grant(grant.grant_key, grant.grant_expires_at) is None
    stored = any_store.get(grant.id)
    assert stored is not None
    assert stored.state is ApprovalState.APPROVED


def test_consume_grant_takes_the_oldest_usable_grant_once(any_store: ApprovalStore) -> None:
    key = make_draft().grant_key
    assert any_store.consume_grant(key, NOW) is None
    pending = any_store.create(make_draft(), NOW)
    first = approved(any_store)
    other_key = approved(any_store, parameters=("8",))
    second = approved(any_store)

    taken = any_store.consume_grant(key, NOW)
    assert taken is not None
    assert (taken.id, taken.state, taken.executed_at) == (first.id, ApprovalState.EXECUTED, NOW)
    again = any_store.consume_grant(key, NOW)
    assert again is not None
    assert again.id == second.id
    assert any_store.consume_grant(key, NOW) is None
    remaining = any_store.get_many([pending.id, other_key.id])
    assert remaining[pending.id].state is ApprovalState.PENDING
    assert remaining[other_key.id].state is ApprovalState.APPROVED


@pytest.mark.parametrize("by_key", [False, True], ids=["consume", "consume_grant"])
def test_racing_consumers_run_the_statement_once(any_store_case: StoreCase, by_key: bool) -> None:
    stores = [any_store_case.open(), any_store_case.open()]
    grant = approved(stores[0])

    def consume(index: int) -> ApprovalRequest | None:
        store = stores[index % 2]
        if by_key:
            return store.consume_grant(grant.grant_key, NOW)
        return store.consume(grant.id, NOW)

    results = race(8, consume)
    assert not [r for r in results if isinstance(r, BaseException)], results
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert isinstance(winners[0], ApprovalRequest)
    assert winners[0].state is ApprovalState.EXECUTED


def test_two_stores_on_the_same_data_see_each_others_writes(any_store_case: StoreCase) -> None:
    one, two = any_store_case.open(), any_store_case.open()
    request = one.create(make_draft(), NOW)
    assert two.get(request.id) == request
    decided = two.vote(request.id, DBA, Verdict.APPROVE, "", NOW, HOUR)
    assert one.get(request.id) == decided
    assert one.consume(request.id, NOW) is not None
    assert two.consume_grant(request.grant_key, NOW) is None
    token = TokenRecord("t1", "dave", "d" * 64, "laptop", NOW, None)
    two.add_token(token)
    assert one.find_token(token.digest, NOW) == token


# Tokens.


def test_tokens_are_found_until_they_expire_or_are_revoked(any_store: ApprovalStore) -> None:
    forever = TokenRecord("t1", "dave", "a" * 64, "laptop", NOW, None)
    brief = TokenRecord("t2", "erin", "b" * 64, "ci", NOW + timedelta(seconds=1), NOW + HOUR)
    revoked = TokenRecord("t3", "dave", "c" * 64, "old", NOW + timedelta(seconds=2), None, True)
    for token in (forever, brief, revoked):
        any_store.add_token(token)

    assert any_store.find_token(forever.digest, NOW + 1000 * HOUR) == forever
    assert any_store.find_token(brief.digest, NOW) == brief
    assert any_store.find_token(brief.digest, NOW + HOUR) is None
    assert any_store.find_token(revoked.digest, NOW) is None
    assert any_store.find_token("e" * 64, NOW) is None
    assert any_store.list_tokens() == [forever, brief, revoked]

    assert any_store.revoke_token("t1") is True
    assert any_store.revoke_token("t1") is False
    assert any_store.revoke_token("nope") is False
    assert any_store.find_token(forever.digest, NOW) is None
    assert any_store.list_tokens()[0].revoked is True


def test_a_token_digest_is_stored_once(any_store: ApprovalStore) -> None:
    any_store.add_token(TokenRecord("t1", "dave", "a" * 64, "", NOW, None))
    with pytest.raises(StateStoreError, match="t2"):
        any_store.add_token(TokenRecord("t2", "erin", "a" * 64, "", NOW, None))
    assert [t.id for t in any_store.list_tokens()] == ["t1"]


def test_naive_times_are_refused(any_store: ApprovalStore) -> None:
    with pytest.raises(ValueError, match="timezone"):
        any_store.create(make_draft(), NOW.replace(tzinfo=None))


def test_store_errors_are_approval_errors() -> None:
    assert issubclass(StateStoreError, ApprovalError)


# SQLite specifics.


def test_the_sqlite_file_is_private_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SQLiteApprovalStore(path)
    try:
        store.create(make_draft(), NOW)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        finally:
            conn.close()
    finally:
        store.close()
    assert "SQLiteApprovalStore" in repr(store)


def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    SQLiteApprovalStore(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("INSERT INTO schema_version (version) VALUES (99)")
    conn.close()
    with pytest.raises(StateStoreError, match="version 99"):
        SQLiteApprovalStore(path)


def test_sqlite_reopens_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    first = SQLiteApprovalStore(path)
    request = first.create(make_draft(), NOW)
    first.close()
    second = SQLiteApprovalStore(path)
    try:
        assert second.get(request.id) == request
    finally:
        second.close()
    with pytest.raises(StateStoreError, match="closed"):
        second.get(request.id)


# PostgreSQL specifics.


def test_postgres_schema_names_are_checked(approvals_pg_dsn: str) -> None:
    with pytest.raises(ValueError, match="schema names"):
        PostgresApprovalStore(approvals_pg_dsn, schema='x"; DROP TABLE y; --')


def test_an_unreachable_postgres_store_names_host_and_database_only() -> None:
    conninfo = "host=127.0.0.1 port=1 user=u password=hunter2 dbname=d connect_timeout=1"
    with pytest.raises(StateStoreError) as raised:
        PostgresApprovalStore(conninfo)
    assert "127.0.0.1/d" in raised.value.message
    assert "hunter2" not in str(raised.value)


def test_a_malformed_connection_string_is_not_echoed() -> None:
    with pytest.raises(StateStoreError) as raised:
        PostgresApprovalStore("host=x password=hunter2 oops")
    assert "hunter2" not in str(raised.value)


def test_the_postgres_store_repr_hides_the_password(approvals_pg_dsn: str, pg_schema: str) -> None:
    conninfo = approvals_pg_dsn + " password=hunter2"
    try:
        store = PostgresApprovalStore(conninfo, schema=pg_schema)
    except StateStoreError as error:  # a server that checks passwords refuses this one
        assert "hunter2" not in str(error)
        return
    try:
        assert "hunter2" not in repr(store)
        assert pg_schema in repr(store)
    finally:
        store.close()


def test_postgres_instances_starting_together_migrate_once(
    approvals_pg_dsn: str, pg_schema: str
) -> None:
    results = race(6, lambda _: PostgresApprovalStore(approvals_pg_dsn, schema=pg_schema))
    stores = [r for r in results if isinstance(r, PostgresApprovalStore)]
    try:
        assert len(stores) == 6, results
        with psycopg.connect(approvals_pg_dsn) as conn:
            versions = conn.execute(f"SELECT version FROM {pg_schema}.schema_version").fetchall()
        assert versions == [(1,)]
    finally:
        for store in stores:
            store.close()


def test_the_postgres_store_reconnects_after_its_connection_dies(
    approvals_pg_dsn: str, pg_schema: str
) -> None:
    store = PostgresApprovalStore(approvals_pg_dsn, schema=pg_schema)
    try:
        request = store.create(make_draft(), NOW)
        pid = store._connection().info.backend_pid
        with psycopg.connect(approvals_pg_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(StateStoreError, match="unreachable"):
            store.get(request.id)
        assert store.get(request.id) == request
        assert store._connection().info.backend_pid != pid
    finally:
        store.close()

"""Fixtures for the approval tests: both state stores, drafts and a fixed clock.

`any_store` runs a test against SQLite (a file in tmp_path) and against the real PostgreSQL (a
private database made for this test module and dropped after it, one fresh schema per test).
`StoreCase.open()` opens another store on the same file or schema, as a second Bastion instance
would; every store opened is closed after the test.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bastion.approvals.model import RequestDraft, grant_key
from bastion.approvals.postgres_store import PostgresApprovalStore
from bastion.approvals.sqlite_store import SQLiteApprovalStore
from bastion.approvals.store import ApprovalStore
from support.servers import PostgresEndpoint, postgres_endpoint, scratch_database

__all__ = ["postgres_endpoint"]

NOW = datetime(2024, 5, 1, 12, 0, 0, 654321, tzinfo=UTC)
HOUR = timedelta(hours=1)


def make_draft(**overrides: Any) -> RequestDraft:
    """A draft by alice for a DELETE on `shop`, decidable for an hour by the dba group."""
    statement = overrides.pop("statement", "DELETE FROM orders WHERE id = $1")
    parameters = overrides.pop("parameters", ("7",))
    requester = overrides.pop("requester", "alice")
    target = overrides.pop("target", "shop")
    draft = RequestDraft(
        requester=requester,
        requester_groups=("analysts",),
        source_address="10.0.0.5:51234",
        target=target,
        statement=statement,
        parameters=parameters,
        fingerprint="fp-delete-orders",
        grant_key=grant_key(requester, target, statement, parameters),
        rule="deletes-need-approval",
        policy_reason="deleting orders needs a DBA",
        reason="ticket OPS-12",
        approver_groups=("dba",),
        min_approvals=1,
        session_id="sess-1",
        expires_at=NOW + HOUR,
    )
    return dataclasses.replace(draft, **overrides)


@pytest.fixture(scope="module")
def approvals_pg_dsn(postgres_endpoint: PostgresEndpoint) -> Iterator[str]:
    """A private database for this test module, dropped at its end."""
    with scratch_database(postgres_endpoint, "bastion_approvals_test") as name:
        yield postgres_endpoint.dsn(dbname=name)


@pytest.fixture
def pg_schema() -> str:
    return f"state_{secrets.token_hex(4)}"


@dataclass
class StoreCase:
    name: str
    factory: Callable[[], ApprovalStore]
    opened: list[ApprovalStore] = field(default_factory=list)

    def open(self) -> ApprovalStore:
        store = self.factory()
        self.opened.append(store)
        return store

    def close(self) -> None:
        for store in self.opened:
            store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def any_store_case(
    request: pytest.FixtureRequest, tmp_path: Path, pg_schema: str
) -> Iterator[StoreCase]:
    if request.param == "sqlite":
        path = tmp_path / "state.db"
        case = StoreCase("sqlite", lambda: SQLiteApprovalStore(path))
    else:
        dsn = request.getfixturevalue("approvals_pg_dsn")
        case = StoreCase("postgres", lambda: PostgresApprovalStore(dsn, schema=pg_schema))
    try:
        yield case
    finally:
        case.close()


@pytest.fixture
def any_store(any_store_case: StoreCase) -> ApprovalStore:
    return any_store_case.open()

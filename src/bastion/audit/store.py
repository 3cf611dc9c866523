"""The AuditStore protocol every audit backend implements, and what the backends share.

A store keeps records in seq order and never computes hashes: the writer chains records and the
store checks, inside the append transaction and under its write lock, that the batch continues
the chain head it holds. A batch that does not (another writer got there first) is refused with
ChainConflict and nothing is written, so several writers sharing a store never fork the chain.

`open_store` picks the backend from a location: a `postgresql://` URL or a SQLite file path.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol

from bastion.audit.record import AuditRecord, ChainHead

Durability = Literal["buffered", "sync"]
DEFAULT_SCHEMA = "bastion_audit"
PAGE_SIZE = 1000
"""Records fetched per query while iterating: bounded memory for any store size."""


class AuditStore(Protocol):
    def head(self) -> ChainHead:
        """The seq and hash the next appended record must follow ((0, GENESIS) when new)."""
        ...

    def append(self, records: Sequence[AuditRecord]) -> None:
        """Write a chained batch in one transaction, or raise ChainConflict and write nothing."""
        ...

    def last(self, kind: str | None = None) -> AuditRecord | None:
        """The record with the highest seq (of `kind`, when given)."""
        ...

    def get(self, seq: int) -> AuditRecord | None: ...

    def iterate(
        self, from_seq: int | None = None, to_seq: int | None = None
    ) -> Iterator[AuditRecord]:
        """Records in seq order, both bounds included, fetched page by page."""
        ...

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
        """Records matching every given filter, in seq order (newest first if `descending`).

        `table` matches a name in the payload's `tables` list exactly or as its last part
        (`orders` matches `public.orders`); `since` is inclusive, `until` exclusive.
        """
        ...

    def prune(self, before_seq: int) -> int:
        """Delete every record with seq < before_seq; returns how many were deleted."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SearchFilter:
    """The search arguments, gathered so each backend turns them into its own SQL."""

    user: str | None = None
    target: str | None = None
    decision: str | None = None
    rule: str | None = None
    table: str | None = None
    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def equalities(self) -> list[tuple[str, str]]:
        """(column, value) pairs for the plain equality filters that are set."""
        pairs = [
            ("username", self.user),
            ("target", self.target),
            ("decision", self.decision),
            ("rule", self.rule),
            ("kind", self.kind),
        ]
        return [(column, value) for column, value in pairs if value is not None]


def check_batch(records: Sequence[AuditRecord]) -> None:
    """The batch links up internally; whether it continues the store is the store's check."""
    for before, after in itertools.pairwise(records):
        if after.seq != before.seq + 1 or after.prev_hash != before.hash:
            raise ValueError(f"audit batch is not chained at seq {after.seq}")


def like_escape(text: str) -> str:
    """`text` as a literal inside a LIKE pattern with ESCAPE '\\'."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def open_store(
    location: str | Path,
    durability: Durability = "buffered",
    *,
    schema: str = DEFAULT_SCHEMA,
    create: bool = True,
) -> AuditStore:
    """A PostgreSQL store for a `postgres://` or `postgresql://` URL, else a SQLite file store.

    `schema` applies to PostgreSQL only; `create` to SQLite only (False: the file must exist).
    """
    text = str(location)
    if text.startswith(("postgresql://", "postgres://")):
        from bastion.audit.postgres_store import PostgresAuditStore

        return PostgresAuditStore(text, schema=schema, durability=durability)
    from bastion.audit.sqlite_store import SQLiteAuditStore

    return SQLiteAuditStore(Path(text), durability=durability, create=create)

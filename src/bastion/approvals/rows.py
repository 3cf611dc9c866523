"""Rows of the approval stores' tables, as model objects.

Both stores select a request's columns in the same order and tokens likewise; they differ only
in how lists and times are stored (JSON text and epoch microseconds in SQLite, text[] and
timestamptz in PostgreSQL), so each passes its own decoders.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from bastion.approvals.model import ApprovalRequest, ApprovalState, TokenRecord, Vote

Strings = Callable[[Any], tuple[Any, ...]]
Time = Callable[[Any], datetime]


def request_from_row(
    row: Sequence[Any], votes: tuple[Vote, ...], strings: Strings, time: Time
) -> ApprovalRequest:
    """A request from the 22 columns id, requester ... state_reason, in table order."""

    def maybe(value: Any) -> datetime | None:
        return None if value is None else time(value)

    return ApprovalRequest(
        id=int(row[0]),
        requester=row[1],
        requester_groups=strings(row[2]),
        source_address=row[3],
        target=row[4],
        statement=row[5],
        parameters=strings(row[6]),
        fingerprint=row[7],
        grant_key=row[8],
        rule=row[9],
        policy_reason=row[10],
        reason=row[11],
        approver_groups=strings(row[12]),
        min_approvals=int(row[13]),
        session_id=row[14],
        state=ApprovalState(row[15]),
        created_at=time(row[16]),
        expires_at=time(row[17]),
        decided_at=maybe(row[18]),
        grant_expires_at=maybe(row[19]),
        executed_at=maybe(row[20]),
        state_reason=row[21],
        votes=votes,
    )


def token_from_row(row: Sequence[Any], time: Time) -> TokenRecord:
    """A token from the columns id, user, digest, label, created_at, expires_at, revoked."""
    return TokenRecord(
        id=row[0],
        user=row[1],
        digest=row[2],
        label=row[3],
        created_at=time(row[4]),
        expires_at=None if row[5] is None else time(row[5]),
        revoked=bool(row[6]),
    )

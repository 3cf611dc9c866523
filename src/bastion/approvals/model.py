r"""The approval request model, shared by the stores, the session hold and the admin API.

A request is created when the policy answers `require_approval` for a statement. It names who
asked (identity, source address, target), what exactly would run (the full statement text and its
bind parameters), which rule asked for approval and who may give it. Approvers vote; the first
deny, or enough distinct approvals, decides it. An approved request is a *grant*: the held
statement runs once, or, if the session stopped waiting, the same identity may run the same
statement on the same target once more before the grant expires.

States:

    pending --(enough approvals)--> approved --(statement runs)--> executed
       |  \--(one deny)--> denied
       |---(request expiry passes)--> expired        (also: an approved grant not used in time)
       \---(requester cancels or disconnects while held)--> withdrawn
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum


class ApprovalState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"
    EXECUTED = "executed"


FINAL_STATES = frozenset(
    {ApprovalState.DENIED, ApprovalState.EXPIRED, ApprovalState.WITHDRAWN, ApprovalState.EXECUTED}
)


class Verdict(StrEnum):
    APPROVE = "approve"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class Approver:
    """An authenticated person acting on requests (through the admin API or the CLI)."""

    name: str
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Vote:
    approver: str
    verdict: Verdict
    comment: str
    at: datetime


@dataclass(frozen=True, slots=True)
class RequestDraft:
    """Everything known about a request before the store gives it an id."""

    requester: str
    requester_groups: tuple[str, ...]
    source_address: str
    target: str
    statement: str  # the full text, literals included: approvers must see what would run
    parameters: tuple[str | None, ...]  # bind parameters, rendered for people (None = NULL)
    fingerprint: str
    grant_key: str  # see grant_key(): identity + target + exact statement + parameters
    rule: str
    policy_reason: str
    reason: str  # the requester's own reason (SET bastion.reason), may be empty
    approver_groups: tuple[str, ...]  # empty: any authenticated approver but the requester
    min_approvals: int
    session_id: str
    expires_at: datetime  # a pending request can be decided until then


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    id: int
    requester: str
    requester_groups: tuple[str, ...]
    source_address: str
    target: str
    statement: str
    parameters: tuple[str | None, ...]
    fingerprint: str
    grant_key: str
    rule: str
    policy_reason: str
    reason: str
    approver_groups: tuple[str, ...]
    min_approvals: int
    session_id: str
    state: ApprovalState
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None = None
    grant_expires_at: datetime | None = None  # approved requests: the grant is usable until
    executed_at: datetime | None = None
    state_reason: str = ""  # why it was withdrawn / expired, or the deny comment
    votes: tuple[Vote, ...] = field(default=())

    @property
    def approvals(self) -> tuple[str, ...]:
        return tuple(v.approver for v in self.votes if v.verdict is Verdict.APPROVE)

    @property
    def denial(self) -> Vote | None:
        return next((v for v in self.votes if v.verdict is Verdict.DENY), None)


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """An admin API token. Only its SHA-256 digest is stored; the token is shown once."""

    id: str
    user: str
    digest: str  # hex SHA-256 of the token
    label: str
    created_at: datetime
    expires_at: datetime | None
    revoked: bool = False


def grant_key(requester: str, target: str, statement: str, parameters: Sequence[str | None]) -> str:
    """The identity of 'the same statement again': who, where, exact text and parameters.

    Literals are part of the key on purpose: approving `DELETE ... WHERE id = 7` must not
    approve `DELETE ... WHERE id = 8`.
    """
    digest = hashlib.sha256()
    for part in (requester, target, statement):
        digest.update(part.encode())
        digest.update(b"\x00")
    for value in parameters:
        digest.update(b"\x01" if value is None else b"\x02" + value.encode())
        digest.update(b"\x00")
    return digest.hexdigest()


DEFAULT_GRANT_TTL = timedelta(hours=1)

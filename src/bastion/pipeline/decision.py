"""Decision: the closed set of answers the decide stage may give.

The policy never writes to the wire itself; the session machine interprets the Decision. A
statement is allowed (possibly with obligations), denied, or held for approval. A connection
is allowed with a SessionPlan (which upstream credential, read-only or not) or denied.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Obligations:
    """Conditions attached to an allowed statement."""

    read_only: bool = False
    max_rows: int | None = None
    unmask: frozenset[str] = frozenset()  # sensitive classes shown in clear, or {"all"}
    mask_with: str | None = None  # one masking strategy for every class, instead of theirs


NO_OBLIGATIONS = Obligations()


@dataclass(frozen=True, slots=True)
class Allow:
    """Forward the statement. `rule` names the rule that allowed it."""

    rule: str = "default"
    obligations: Obligations = field(default=NO_OBLIGATIONS)


@dataclass(frozen=True, slots=True)
class Deny:
    """Refuse the statement: it never reaches the server."""

    rule: str
    reason: str
    hint: str | None = None
    sqlstate: str = "42501"  # insufficient_privilege; 57014 when the client cancelled


@dataclass(frozen=True, slots=True)
class RequireApproval:
    """Hold the statement until enough approvers agree."""

    rule: str
    reason: str
    approver_groups: tuple[str, ...] = ()
    min_approvals: int = 1
    hold_seconds: float | None = None  # None: the approvals settings decide
    expire_seconds: float | None = None
    obligations: Obligations = field(default=NO_OBLIGATIONS)  # once approved


Decision = Allow | Deny | RequireApproval

ALLOW_DEFAULT = Allow()


@dataclass(frozen=True, slots=True)
class SessionPlan:
    """How an accepted connection is opened upstream."""

    rule: str = "default"
    credential: str = "default"  # the name of one of the target's upstream credentials
    read_only: bool = False  # open the upstream session with default_transaction_read_only


@dataclass(frozen=True, slots=True)
class RefuseSession:
    rule: str
    reason: str
    hint: str | None = None


SessionDecision = SessionPlan | RefuseSession

SESSION_DEFAULT = SessionPlan()

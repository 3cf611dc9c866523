"""The voting and lifetime rules of approval requests, as pure functions.

Both stores call these inside their write transactions, so the rules live in one place and the
stores only load, lock and save. Nothing here touches a store, a clock or the network: every
function takes the request and `now` and returns a new request or a yes/no answer. Refusals are
ApprovalError subclasses whose messages are written for an approver at a terminal; they name the
request id and never quote the statement or its parameters.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from bastion.approvals.errors import AlreadyVoted, NotAnApprover, RequestClosed, SelfApproval
from bastion.approvals.model import (
    ApprovalRequest,
    ApprovalState,
    Approver,
    RequestDraft,
    Verdict,
    Vote,
)


def pending_request(request_id: int, draft: RequestDraft, now: datetime) -> ApprovalRequest:
    """The request a store has just created from `draft` under `request_id`."""
    fields = {field.name: getattr(draft, field.name) for field in dataclasses.fields(draft)}
    return ApprovalRequest(id=request_id, state=ApprovalState.PENDING, created_at=now, **fields)


def apply_vote(
    request: ApprovalRequest,
    approver: Approver,
    verdict: Verdict,
    comment: str,
    now: datetime,
    grant_ttl: timedelta,
) -> ApprovalRequest:
    """`request` with the vote recorded and, if it decides, the new state; raises if refused.

    One deny decides. Enough approvals from distinct approvers approve, and the grant is then
    usable for `grant_ttl`.
    """
    check_open(request, now)
    if approver.name == request.requester:
        raise SelfApproval(
            f"request {request.id} is yours: you cannot approve or deny it yourself "
            "(to withdraw it, cancel the statement)"
        )
    if request.approver_groups and not set(approver.groups) & set(request.approver_groups):
        groups = ", ".join(request.approver_groups)
        raise NotAnApprover(
            f"request {request.id} needs an approver from {groups}; "
            f"{approver.name} is in none of these groups"
        )
    if any(vote.approver == approver.name for vote in request.votes):
        raise AlreadyVoted(f"{approver.name} has already voted on request {request.id}")

    votes = (*request.votes, Vote(approver.name, verdict, comment, now))
    if verdict is Verdict.DENY:
        return dataclasses.replace(
            request, votes=votes, state=ApprovalState.DENIED, decided_at=now, state_reason=comment
        )
    voted = dataclasses.replace(request, votes=votes)
    if distinct_approvals(voted) >= request.min_approvals:
        return dataclasses.replace(
            voted,
            state=ApprovalState.APPROVED,
            decided_at=now,
            grant_expires_at=now + grant_ttl,
        )
    return voted


def check_open(request: ApprovalRequest, now: datetime) -> None:
    """Raise RequestClosed unless `request` is pending and not past its expiry."""
    if request.state is not ApprovalState.PENDING:
        raise RequestClosed(f"request {request.id} is {request.state}; it takes no more votes")
    if now >= request.expires_at:
        raise RequestClosed(
            f"request {request.id} expired at {_when(request.expires_at)} without a decision; "
            "it takes no more votes"
        )


def distinct_approvals(request: ApprovalRequest) -> int:
    """How many different people approved `request`."""
    return len(set(request.approvals))


def is_expired(request: ApprovalRequest, now: datetime) -> bool:
    """A pending request past its expiry, or an approved one whose grant has lapsed."""
    if request.state is ApprovalState.PENDING:
        return now >= request.expires_at
    if request.state is ApprovalState.APPROVED:
        return request.grant_expires_at is None or request.grant_expires_at <= now
    return False


def usable_grant(request: ApprovalRequest, now: datetime) -> bool:
    """Whether `request` is an approved grant that may still run its statement, once."""
    return (
        request.state is ApprovalState.APPROVED
        and request.grant_expires_at is not None
        and now < request.grant_expires_at
    )


def expired(request: ApprovalRequest, now: datetime) -> ApprovalRequest:
    """`request` moved to expired, with the reason; the caller checked is_expired()."""
    if request.state is ApprovalState.PENDING:
        return dataclasses.replace(
            request,
            state=ApprovalState.EXPIRED,
            decided_at=now,
            state_reason=f"no decision before {_when(request.expires_at)}",
        )
    lapsed = request.grant_expires_at
    return dataclasses.replace(
        request,
        state=ApprovalState.EXPIRED,
        state_reason="the approval was not used before "
        + (_when(lapsed) if lapsed is not None else "it lapsed"),
    )


def withdrawn(request: ApprovalRequest, reason: str, now: datetime) -> ApprovalRequest:
    """`request` moved to withdrawn; the caller checked it was pending."""
    return dataclasses.replace(
        request, state=ApprovalState.WITHDRAWN, decided_at=now, state_reason=reason
    )


def executed(request: ApprovalRequest, now: datetime) -> ApprovalRequest:
    """`request` moved to executed; the caller checked usable_grant()."""
    return dataclasses.replace(request, state=ApprovalState.EXECUTED, executed_at=now)


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

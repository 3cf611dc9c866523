"""The voting and lifetime rules, as pure functions: refusals, decisions and grant windows."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.approvals import rules
from bastion.approvals.errors import (
    AlreadyVoted,
    ApprovalError,
    NotAnApprover,
    RequestClosed,
    SelfApproval,
)
from bastion.approvals.model import ApprovalRequest, ApprovalState, Approver, Verdict, Vote

from .conftest import HOUR, NOW, make_draft

DBA = Approver("dave", ("dba",))
DBA2 = Approver("erin", ("oncall", "dba"))
SECRET_STATEMENT = "UPDATE users SET password = 'hunter2' WHERE id = $1"


def pending(**overrides: object) -> ApprovalRequest:
    return rules.pending_request(42, make_draft(**overrides), NOW)


def vote(
    request: ApprovalRequest, approver: Approver, verdict: Verdict = Verdict.APPROVE
) -> ApprovalRequest:
    return rules.apply_vote(request, approver, verdict, "", NOW, HOUR)


def test_a_new_request_is_pending_with_the_draft_fields() -> None:
    draft = make_draft()
    request = rules.pending_request(7, draft, NOW)
    assert (request.id, request.state, request.created_at) == (7, ApprovalState.PENDING, NOW)
    assert request.statement == draft.statement
    assert request.expires_at == draft.expires_at
    assert request.votes == ()


def test_one_approval_approves_by_default() -> None:
    decided = rules.apply_vote(pending(), DBA, Verdict.APPROVE, "fine", NOW, HOUR)
    assert decided.state is ApprovalState.APPROVED
    assert decided.votes == (Vote("dave", Verdict.APPROVE, "fine", NOW),)
    assert decided.decided_at == NOW
    assert decided.grant_expires_at == NOW + HOUR
    assert decided.state_reason == ""


def test_approval_needs_min_distinct_approvers() -> None:
    request = vote(pending(min_approvals=2), DBA)
    assert request.state is ApprovalState.PENDING
    assert request.decided_at is None
    with pytest.raises(AlreadyVoted, match=r"dave.*request 42"):
        vote(request, DBA)
    decided = vote(request, DBA2)
    assert decided.state is ApprovalState.APPROVED
    assert decided.approvals == ("dave", "erin")


def test_a_deny_decides_at_once() -> None:
    request = vote(pending(min_approvals=3), DBA)
    denied = rules.apply_vote(request, DBA2, Verdict.DENY, "not on a Friday", NOW, HOUR)
    assert denied.state is ApprovalState.DENIED
    assert denied.state_reason == "not on a Friday"
    assert denied.decided_at == NOW
    assert denied.grant_expires_at is None
    assert denied.denial == Vote("erin", Verdict.DENY, "not on a Friday", NOW)


@pytest.mark.parametrize("verdict", list(Verdict))
def test_the_requester_cannot_vote(verdict: Verdict) -> None:
    request = pending(statement=SECRET_STATEMENT, approver_groups=())
    with pytest.raises(SelfApproval) as raised:
        vote(request, Approver("alice", ("dba",)), verdict)
    assert "request 42" in raised.value.message
    assert "cancel" in raised.value.message
    assert "hunter2" not in raised.value.message


def test_only_members_of_an_approver_group_may_vote() -> None:
    request = pending(approver_groups=("dba", "security"), statement=SECRET_STATEMENT)
    with pytest.raises(NotAnApprover) as raised:
        vote(request, Approver("mallory", ("analysts",)))
    assert "request 42" in raised.value.message
    assert "dba, security" in raised.value.message
    assert "hunter2" not in raised.value.message
    assert vote(request, Approver("sam", ("security",))).state is ApprovalState.APPROVED


def test_without_approver_groups_anyone_but_the_requester_may_vote() -> None:
    request = pending(approver_groups=())
    assert vote(request, Approver("zoe")).state is ApprovalState.APPROVED


@pytest.mark.parametrize(
    "state",
    [s for s in ApprovalState if s is not ApprovalState.PENDING],
)
def test_closed_requests_take_no_votes(state: ApprovalState) -> None:
    request = pending()
    closed = dataclasses.replace(request, state=state)
    with pytest.raises(RequestClosed, match=f"request 42 is {state.value}"):
        vote(closed, DBA)


def test_expired_requests_take_no_votes() -> None:
    request = pending()
    before = rules.apply_vote(
        request, DBA, Verdict.APPROVE, "", request.expires_at - timedelta(microseconds=1), HOUR
    )
    assert before.state is ApprovalState.APPROVED
    with pytest.raises(RequestClosed, match="request 42 expired at 2024-05-01 13:00:00 UTC"):
        rules.apply_vote(request, DBA, Verdict.APPROVE, "", request.expires_at, HOUR)


def test_closed_is_checked_before_who_votes() -> None:
    closed = dataclasses.replace(pending(), state=ApprovalState.DENIED)
    with pytest.raises(RequestClosed):
        vote(closed, Approver("alice"))


def test_expiry_and_grant_windows() -> None:
    request = pending()
    assert not rules.is_expired(request, request.expires_at - timedelta(microseconds=1))
    assert rules.is_expired(request, request.expires_at)
    assert not rules.usable_grant(request, NOW)

    grant = vote(request, DBA)
    assert grant.grant_expires_at is not None
    last = grant.grant_expires_at - timedelta(microseconds=1)
    assert rules.usable_grant(grant, last)
    assert not rules.is_expired(grant, last)
    assert not rules.usable_grant(grant, grant.grant_expires_at)
    assert rules.is_expired(grant, grant.grant_expires_at)

    executed = rules.executed(grant, last)
    assert (executed.state, executed.executed_at) == (ApprovalState.EXECUTED, last)
    assert not rules.usable_grant(executed, NOW)
    assert not rules.is_expired(executed, grant.grant_expires_at + HOUR)


def test_expired_and_withdrawn_record_why() -> None:
    request = pending()
    lapsed = rules.expired(request, request.expires_at)
    assert lapsed.state is ApprovalState.EXPIRED
    assert lapsed.state_reason == "no decision before 2024-05-01 13:00:00 UTC"
    grant = vote(request, DBA)
    unused = rules.expired(grant, NOW + 2 * HOUR)
    assert unused.state is ApprovalState.EXPIRED
    assert unused.decided_at == grant.decided_at
    assert "not used before" in unused.state_reason
    withdrawn = rules.withdrawn(request, "client disconnected", NOW)
    assert (withdrawn.state, withdrawn.state_reason) == (
        ApprovalState.WITHDRAWN,
        "client disconnected",
    )


# Properties over any sequence of votes.

NAMES = ["alice", "bob", "carol", "dave", "erin"]
GROUPS = ["dba", "security", "oncall"]

groups = st.lists(st.sampled_from(GROUPS), max_size=2, unique=True).map(tuple)
approvers = st.builds(Approver, st.sampled_from(NAMES), groups)
ballots = st.lists(st.tuples(approvers, st.sampled_from(list(Verdict))), max_size=12)


@settings(max_examples=300)
@given(
    requester=st.sampled_from(NAMES),
    approver_groups=groups,
    min_approvals=st.integers(min_value=1, max_value=4),
    ballots=ballots,
)
def test_any_votes_keep_the_rules(
    requester: str,
    approver_groups: tuple[str, ...],
    min_approvals: int,
    ballots: list[tuple[Approver, Verdict]],
) -> None:
    request = pending(
        requester=requester, approver_groups=approver_groups, min_approvals=min_approvals
    )
    for approver, verdict in ballots:
        # The oracle: the vote is taken exactly when every rule allows it.
        allowed = (
            request.state is ApprovalState.PENDING
            and approver.name != requester
            and (not approver_groups or bool(set(approver.groups) & set(approver_groups)))
            and approver.name not in {v.approver for v in request.votes}
        )
        try:
            after = rules.apply_vote(request, approver, verdict, "", NOW, HOUR)
        except ApprovalError as error:
            assert not allowed, error.message
            assert f"request {request.id}" in error.message
            continue
        assert allowed
        assert after.votes[:-1] == request.votes
        request = after

        voters = [v.approver for v in request.votes]
        assert requester not in voters
        assert len(voters) == len(set(voters))
        denied = request.denial is not None
        assert (request.state is ApprovalState.DENIED) == denied
        if request.state is ApprovalState.APPROVED:
            assert len(set(request.approvals)) >= min_approvals
            assert request.grant_expires_at == NOW + HOUR
        if request.state is ApprovalState.PENDING:
            assert len(set(request.approvals)) < min_approvals

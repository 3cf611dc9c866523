"""Session rules: the first match picks the credential or refuses the connection."""

from __future__ import annotations

from datetime import UTC, datetime

from bastion.identity.records import IdentityKind
from bastion.pipeline.decision import RefuseSession, SessionPlan

from .conftest import connection, engine

SESSIONS = """
version: 1
sessions:
  - id: agents-readonly
    match: {kinds: [agent]}
    credential: readonly
    read_only: true
  - id: no-night-logins
    match: {groups: [contractors]}
    when: 'time.hour < 7 || time.hour >= 20'
    effect: deny
    reason: contractors connect between 07:00 and 20:00 UTC
    hint: come back in the morning
  - id: contractors
    match: {groups: [contractors]}
    credential: limited
  - id: office-only
    match: {users: [remote-*]}
    when: '!source.ip_in("10.0.0.0/8")'
    effect: deny
"""


def at_hour(hour: int) -> float:
    return datetime(2024, 1, 1, hour, 0, tzinfo=UTC).timestamp()


def test_no_match_gets_the_default_credential() -> None:
    assert engine(SESSIONS).connect(connection()) == SessionPlan()


def test_credential_and_read_only() -> None:
    decision = engine(SESSIONS).connect(connection(kind=IdentityKind.AGENT))
    assert decision == SessionPlan("agents-readonly", "readonly", True)


def test_deny_with_a_time_window() -> None:
    contractor = connection(groups=("contractors",))
    assert engine(SESSIONS, now=at_hour(22)).connect(contractor) == RefuseSession(
        "no-night-logins",
        "contractors connect between 07:00 and 20:00 UTC",
        "come back in the morning",
    )
    assert engine(SESSIONS, now=at_hour(6)).connect(contractor).rule == "no-night-logins"


def test_first_match_wins() -> None:
    contractor = connection(groups=("contractors",))
    assert engine(SESSIONS, now=at_hour(12)).connect(contractor) == SessionPlan(
        "contractors", "limited", False
    )
    contracting_agent = connection(groups=("contractors",), kind=IdentityKind.AGENT)
    assert engine(SESSIONS, now=at_hour(22)).connect(contracting_agent).rule == "agents-readonly"


def test_source_address_condition() -> None:
    policy_engine = engine(SESSIONS)
    assert isinstance(
        policy_engine.connect(connection(user="remote-ann", ip="203.0.113.9")), RefuseSession
    )
    assert policy_engine.connect(connection(user="remote-ann", ip="10.2.3.4")) == SessionPlan()


def test_failing_condition_refuses_the_connection() -> None:
    text = """
    version: 1
    sessions:
      - id: eu-readonly
        when: 'target.labels.region == "eu"'
        credential: readonly
    """
    decision = engine(text).connect(connection(labels={}))
    assert isinstance(decision, RefuseSession)
    assert decision.rule == "eu-readonly"


def test_deny_rule_with_failing_condition_refuses() -> None:
    text = """
    version: 1
    sessions:
      - id: block
        when: 'int(identity.name) > 0'
        effect: deny
    """
    assert isinstance(engine(text).connect(connection()), RefuseSession)


def test_explain_shows_session_rules() -> None:
    explanation = engine(SESSIONS, now=at_hour(22)).explain(connection(groups=("contractors",)), [])
    assert explanation.session.decision.rule == "no-night-logins"
    matched = [rule.id for rule in explanation.session.rules if rule.matched]
    assert matched == ["no-night-logins", "contractors"]
    (agents,) = [rule for rule in explanation.session.rules if rule.id == "agents-readonly"]
    assert agents.near_miss

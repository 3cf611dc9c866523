"""Precedence, default effects, messages of several statements and nested statements."""

from __future__ import annotations

import pytest

from bastion.pipeline.decision import (
    Allow,
    Deny,
    Obligations,
    RequireApproval,
)
from bastion.policy.combine import most_restrictive
from bastion.sql.analyze import analyze

from .conftest import PRODUCTION, connection, engine, statement

PRECEDENCE = """
version: 1
rules:
  - id: read
    match: {statements: [select, delete, update]}
    effect: allow
  - id: deletes-need-approval
    match: {statements: [delete, update]}
    effect: require_approval
    approvers: {groups: [dba], min: 2}
    reason: deletes are reviewed
  - id: no-updates
    match: {statements: [update]}
    effect: deny
    reason: updates are off
    hint: use the API
"""


def test_allow_when_only_an_allow_rule_matches() -> None:
    decision = engine(PRECEDENCE).decide(connection(), [statement("select")])
    assert decision == Allow("read")


def test_require_approval_beats_allow() -> None:
    decision = engine(PRECEDENCE).decide(connection(), [statement("delete")])
    assert decision == RequireApproval("deletes-need-approval", "deletes are reviewed", ("dba",), 2)


def test_deny_beats_require_approval_and_allow() -> None:
    decision = engine(PRECEDENCE).decide(connection(), [statement("update")])
    assert decision == Deny("no-updates", "updates are off", "use the API")


def test_precedence_does_not_depend_on_rule_order() -> None:
    reversed_rules = """
    version: 1
    rules:
      - id: no-updates
        match: {statements: [update]}
        effect: deny
      - id: read
        match: {statements: [update]}
        effect: allow
    """
    decision = engine(reversed_rules).decide(connection(), [statement("update")])
    assert isinstance(decision, Deny)
    assert decision.rule == "no-updates"


def test_no_matching_rule_gets_the_default_deny() -> None:
    decision = engine(PRECEDENCE).decide(connection(), [statement("insert")])
    assert isinstance(decision, Deny)
    assert decision.rule == "default"
    assert "insert" in decision.reason


def test_default_effect_allow() -> None:
    decision = engine("version: 1\ndefault_effect: allow\n").decide(
        connection(), [statement("insert")]
    )
    assert decision == Allow("default")


def test_default_effect_per_target() -> None:
    text = """
    version: 1
    default_effect: deny
    targets:
      sandbox: {default_effect: allow}
    """
    policy_engine = engine(text)
    assert policy_engine.decide(connection(target="sandbox"), [statement("insert")]) == Allow(
        "default"
    )
    assert isinstance(policy_engine.decide(connection(target="demo"), [statement("insert")]), Deny)


def test_target_can_be_stricter_than_the_policy_default() -> None:
    text = """
    version: 1
    default_effect: allow
    targets:
      vault: {default_effect: deny}
    """
    policy_engine = engine(text)
    assert isinstance(policy_engine.decide(connection(target="vault"), [statement("select")]), Deny)
    assert policy_engine.decide(connection(target="other"), [statement("select")]) == Allow(
        "default"
    )


def test_rule_without_reason_gets_one_naming_it() -> None:
    text = """
    version: 1
    rules:
      - {id: stop, effect: deny}
      - {id: hold, effect: require_approval, match: {statements: [insert]}}
    """
    denied = engine(text).decide(connection(), [statement("select")])
    assert isinstance(denied, Deny)
    assert "stop" in denied.reason
    assert denied.hint is None


def test_allow_obligations_of_several_matching_allow_rules_merge() -> None:
    text = """
    version: 1
    rules:
      - {id: a, effect: allow, obligations: {max_rows: 500}}
      - {id: b, effect: allow, obligations: {read_only: true, max_rows: 100}}
      - {id: c, effect: allow}
    """
    decision = engine(text).decide(connection(), [statement("select")])
    assert decision == Allow("a", Obligations(read_only=True, max_rows=100))


# -- messages of several statements ----------------------------------------------------------

MULTI = """
version: 1
rules:
  - id: select-capped
    match: {statements: [select]}
    effect: allow
    obligations: {max_rows: 1000}
  - id: show-readonly
    match: {statements: [show]}
    effect: allow
    obligations: {read_only: true, max_rows: 5000}
  - id: insert-approval
    match: {statements: [insert]}
    effect: require_approval
    approvers: {groups: [dba, leads]}
  - id: update-approval
    match: {statements: [update]}
    effect: require_approval
    approvers: {groups: [leads, security], min: 2}
  - id: merge-approval
    match: {statements: [merge]}
    effect: require_approval
    approvers: {groups: [security]}
"""


def test_one_denied_statement_denies_the_whole_message() -> None:
    decision = engine(MULTI).decide(connection(), [statement("select"), statement("drop_table")])
    assert isinstance(decision, Deny)
    assert decision.rule == "default"


def test_the_denied_statement_may_come_first_or_last() -> None:
    decision = engine(MULTI).decide(connection(), [statement("drop_table"), statement("select")])
    assert isinstance(decision, Deny)


def test_allowed_statements_merge_obligations() -> None:
    decision = engine(MULTI).decide(connection(), [statement("select"), statement("show")])
    assert decision == Allow("select-capped,show-readonly", Obligations(True, 1000))


def test_approval_and_allow_make_an_approval() -> None:
    decision = engine(MULTI).decide(connection(), [statement("select"), statement("insert")])
    assert isinstance(decision, RequireApproval)
    assert decision.rule == "insert-approval"


def test_approvals_merge_to_groups_that_can_approve_both() -> None:
    decision = engine(MULTI).decide(connection(), [statement("insert"), statement("update")])
    assert isinstance(decision, RequireApproval)
    assert decision.approver_groups == ("leads",)
    assert decision.min_approvals == 2


def test_approvals_no_group_can_give_together_deny() -> None:
    decision = engine(MULTI).decide(connection(), [statement("insert"), statement("merge")])
    assert isinstance(decision, Deny)
    assert decision.rule == "approval.conflict"


def test_empty_message_is_allowed() -> None:
    assert engine(MULTI).decide(connection(), []) == Allow("empty")


def test_most_restrictive_keeps_the_first_deny() -> None:
    first, second = Deny("a", "first"), Deny("b", "second")
    assert most_restrictive([Allow("x"), first, second]) is first


def test_identical_approvals_stay_one() -> None:
    approval = RequireApproval("r", "why", ("dba",), 1)
    assert most_restrictive([approval, approval]) is approval


# -- statements the analyzer did not understand ---------------------------------------------

ALLOW_ALL = """
version: 1
default_effect: allow
guardrails: {enabled: off}
rules:
  - {id: everything, effect: allow}
"""


def test_unparsed_statement_is_denied_even_when_everything_is_allowed() -> None:
    bad = statement("unknown", error='syntax error at or near "SELEC"')
    decision = engine(ALLOW_ALL).decide(connection(), [bad])
    assert isinstance(decision, Deny)
    assert decision.rule == "analysis.unknown"
    assert "could not analyze" in decision.reason
    assert "SELEC" in decision.reason
    assert decision.hint


def test_unclassified_statement_is_denied() -> None:
    odd = statement("other", flags=frozenset({"unclassified"}))
    decision = engine(ALLOW_ALL).decide(connection(), [odd])
    assert isinstance(decision, Deny)
    assert decision.rule == "analysis.unknown"
    assert "classify" in decision.reason


def test_unknown_statement_denies_its_message() -> None:
    decision = engine(ALLOW_ALL).decide(connection(), [statement("select"), statement("unknown")])
    assert isinstance(decision, Deny)
    assert decision.rule == "analysis.unknown"


def test_parse_errors_from_the_analyzer_are_denied() -> None:
    decision = engine(ALLOW_ALL).decide(connection(), analyze("SELEC 1"))
    assert isinstance(decision, Deny)
    assert decision.rule == "analysis.unknown"


def test_unknown_cannot_be_overridden_as_a_guardrail() -> None:
    with pytest.raises(Exception, match="unknown guardrail"):
        engine(
            """
            version: 1
            guardrails:
              overrides:
                analysis.unknown: {enabled: false}
            """
        )


# -- nested statements -----------------------------------------------------------------------

NESTED = """
version: 1
rules:
  - id: reads
    match: {statements: [select, explain, prepare, declare]}
    effect: allow
    obligations: {max_rows: 10}
  - id: capped
    match: {statements: [select]}
    effect: allow
    obligations: {max_rows: 5}
"""


def test_explain_of_a_delete_is_decided_like_the_delete() -> None:
    explain_delete = statement(
        "explain", inner=(statement("delete", tables_written=(), has_where=False),)
    )
    decision = engine(NESTED).decide(connection(), [explain_delete])
    assert isinstance(decision, Deny)
    assert "delete" in decision.reason


def test_prepare_of_drop_table_is_denied() -> None:
    prepare = statement("prepare", inner=(statement("drop_table"),))
    decision = engine(NESTED).decide(connection(), [prepare])
    assert isinstance(decision, Deny)


def test_allowed_inner_statement_adds_its_obligations() -> None:
    declare = statement("declare", inner=(statement("select"),))
    decision = engine(NESTED).decide(connection(), [declare])
    assert decision == Allow("reads", Obligations(max_rows=5))


def test_inner_statements_nest_recursively() -> None:
    deep = statement("explain", inner=(statement("prepare", inner=(statement("truncate"),)),))
    assert isinstance(engine(NESTED).decide(connection(), [deep]), Deny)


def test_unknown_inner_statement_denies_the_outer_one() -> None:
    do_block = statement("prepare", inner=(statement("unknown", error="bad body"),))
    decision = engine(NESTED).decide(connection(), [do_block])
    assert isinstance(decision, Deny)
    assert decision.rule == "analysis.unknown"


def test_inner_statements_meet_guardrails() -> None:
    text = """
    version: 1
    default_effect: allow
    """
    explain_truncate = statement("explain", inner=(statement("truncate"),))
    decision = engine(text).decide(connection(labels=PRODUCTION), [explain_truncate])
    assert isinstance(decision, Deny)
    assert decision.rule == "guardrail.truncate"


def test_nesting_beyond_the_limit_is_denied() -> None:
    deep = statement("select")
    for _ in range(40):
        deep = statement("explain", inner=(deep,))
    decision = engine(ALLOW_ALL).decide(connection(), [deep])
    assert isinstance(decision, Deny)
    assert decision.rule == "analysis.nesting"


def test_an_internal_error_denies(monkeypatch: pytest.MonkeyPatch) -> None:
    policy_engine = engine(ALLOW_ALL)

    def broken(*args: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(policy_engine, "_decide", broken)
    decision = policy_engine.decide(connection(), [statement("select")])
    assert isinstance(decision, Deny)
    assert decision.rule == "policy.error"

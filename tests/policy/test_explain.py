"""Explain decides exactly like decide, and says why."""

from __future__ import annotations

import itertools

import pytest

from bastion.identity.records import IdentityKind
from bastion.policy.explain import render_json, render_text
from bastion.sql.statement import ColumnRef, StatementInfo

from .conftest import PRODUCTION, connection, engine, statement, table

POLICY = """
version: 1
guardrails:
  overrides:
    drop_table: {effect: require_approval}
rules:
  - id: reads
    match: {groups: [analysts], statements: [select, explain]}
    effect: allow
    obligations: {max_rows: 10}
  - id: pii
    match: {columns: ["customers.ssn"]}
    effect: deny
  - id: night
    match: {kinds: [agent]}
    when: 'time.hour < 6'
    effect: deny
  - id: dba
    match: {groups: [dba]}
    effect: allow
  - id: ops-approval
    match: {groups: [ops], statements: ["drop_*", delete]}
    effect: require_approval
    approvers: {groups: [dba]}
  - id: broken
    match: {users: [carol]}
    when: 'target.labels.nope == "x"'
    effect: deny
"""

CONTEXTS = [
    connection(groups=("analysts",)),
    connection(groups=("dba",), labels=PRODUCTION),
    connection(groups=("ops",), labels=PRODUCTION),
    connection(groups=("analysts",), kind=IdentityKind.AGENT),
    connection(user="carol", groups=("dba",)),
]
STATEMENTS: list[list[StatementInfo]] = [
    [statement("select")],
    [statement("select", columns=(ColumnRef("*", "projection", table("customers")),))],
    [statement("drop_table")],
    [statement("delete", has_where=False)],
    [statement("explain", inner=(statement("delete", has_where=True),))],
    [statement("select"), statement("drop_table")],
    [statement("unknown", error="nope")],
]


@pytest.mark.parametrize(
    ("context_index", "statements_index"),
    list(itertools.product(range(len(CONTEXTS)), range(len(STATEMENTS)))),
)
def test_explain_agrees_with_decide(context_index: int, statements_index: int) -> None:
    policy_engine = engine(POLICY)
    context, statements = CONTEXTS[context_index], STATEMENTS[statements_index]
    explanation = policy_engine.explain(context, statements)
    assert explanation.decision == policy_engine.decide(context, statements)
    assert explanation.session.decision == policy_engine.connect(context)
    assert len(explanation.statements) == len(statements)
    # Rendering works for every case.
    assert render_text(explanation).startswith("decision: ")
    assert render_json(explanation).startswith("{")


def test_explain_lists_every_rule_for_every_statement() -> None:
    explanation = engine(POLICY).explain(CONTEXTS[0], [statement("select")])
    (trace,) = explanation.statements
    assert [rule.id for rule in trace.rules] == [
        "reads",
        "pii",
        "night",
        "dba",
        "ops-approval",
        "broken",
    ]
    assert [rule.id for rule in trace.rules if rule.matched] == ["reads"]


def test_explain_shows_inner_statements_and_guardrails() -> None:
    stmt = statement("explain", inner=(statement("drop_table"),))
    explanation = engine(POLICY).explain(CONTEXTS[1], [stmt])
    (trace,) = explanation.statements
    (inner,) = trace.inner
    assert inner.statement.kind == "drop_table"
    drop = {g.id: g for g in inner.guardrails}["drop_table"]
    assert drop.matched and drop.active
    assert drop.effect == "require_approval"
    text = render_text(explanation)
    assert "inner statement 1: drop_table" in text
    assert (
        "drop_table (require_approval, active: target is labelled environment: production)" in text
    )


def test_explain_says_why_a_guardrail_is_inactive() -> None:
    explanation = engine(POLICY).explain(CONTEXTS[0], [statement("truncate")])
    truncate = {g.id: g for g in explanation.statements[0].guardrails}["truncate"]
    assert truncate.matched and not truncate.active
    assert "environment: production" in truncate.why


def test_explain_shows_the_default_effect() -> None:
    explanation = engine(POLICY).explain(CONTEXTS[0], [statement("insert")])
    trace = explanation.statements[0]
    assert trace.default is not None
    assert "no rule matched: default effect DENY by default" in render_text(explanation)


def test_explain_reports_a_failing_condition_that_matched() -> None:
    explanation = engine(POLICY).explain(CONTEXTS[4], [statement("select")])
    broken = {rule.id: rule for rule in explanation.statements[0].rules}["broken"]
    assert broken.matched
    assert broken.condition is not None
    assert broken.condition.error is not None
    assert broken.condition.holds
    assert "counts as matched" in render_text(explanation)


def test_allow_rule_misses_say_every_table_must_match() -> None:
    text = """
    version: 1
    rules:
      - {id: r, match: {tables: [public.orders]}, effect: allow}
    """
    stmt = statement("select", tables_read=(table("public.orders"), table("hr.salaries")))
    explanation = engine(text).explain(connection(), [stmt])
    (rule,) = explanation.statements[0].rules
    assert rule.misses == (
        "tables: not every one of public.orders,hr.salaries matches ['public.orders']",
    )

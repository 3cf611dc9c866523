"""The demo's policy: alice reads, dana writes (destructive statements need approval), the
reporting agent only SELECTs, at most 1000 rows, through the read-only credential."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from bastion.identity.records import IdentityKind
from bastion.pipeline.context import ConnectionContext
from bastion.pipeline.decision import (
    Allow,
    Deny,
    Obligations,
    RequireApproval,
    SessionPlan,
)
from bastion.policy.engine import PolicyEngine
from bastion.policy.loader import load_policy
from bastion.sql.analyze import analyze
from bastion.sql.statement import StatementInfo

from .conftest import MONDAY_1030, PRODUCTION, connection, statement, table

ALICE = connection("alice", ("analysts",), labels=PRODUCTION)
DANA = connection("dana", ("dba",), labels=PRODUCTION)
AGENT = connection("reporting-agent", ("reporting",), IdentityKind.AGENT, labels=PRODUCTION)
STRANGER = connection("mallory", (), labels=PRODUCTION)


@pytest.fixture(scope="module")
def demo() -> PolicyEngine:
    path = Path(str(resources.files("bastion.demo") / "policy.yaml"))
    return PolicyEngine(load_policy(path), clock=lambda: MONDAY_1030)


def select() -> StatementInfo:
    return statement("select", tables_read=(table("customers"),))


def test_alice_reads_read_only(demo: PolicyEngine) -> None:
    assert demo.decide(ALICE, [select()]) == Allow("analysts-read", Obligations(read_only=True))
    assert isinstance(demo.decide(ALICE, analyze("SELECT * FROM customers")), Allow)
    assert isinstance(demo.decide(ALICE, [statement("show")]), Allow)
    assert isinstance(demo.decide(ALICE, [statement("explain", inner=(select(),))]), Allow)


@pytest.mark.parametrize(
    "stmt",
    [
        statement("insert", tables_written=(table("orders"),)),
        statement("update", has_where=True),
        statement("delete", has_where=True),
        statement("drop_table"),
        statement("create_table"),
        statement("truncate"),
        statement("explain", inner=(statement("delete", has_where=True),)),
        statement("do"),
    ],
)
def test_alice_cannot_write(demo: PolicyEngine, stmt: StatementInfo) -> None:
    assert isinstance(demo.decide(ALICE, [stmt]), Deny)


def test_alice_cannot_hide_a_write_behind_a_read(demo: PolicyEngine) -> None:
    assert isinstance(demo.decide(ALICE, analyze("SELECT 1; DELETE FROM orders")), Deny)


def test_dana_writes_and_sees_values_in_clear(demo: PolicyEngine) -> None:
    clear = Allow("dba-all", Obligations(unmask=frozenset({"all"})))
    assert demo.decide(DANA, [statement("insert")]) == clear
    assert demo.decide(DANA, [statement("update", has_where=True)]) == clear
    assert demo.decide(DANA, [statement("create_table")]) == clear


@pytest.mark.parametrize(
    ("stmt", "guardrail"),
    [
        (statement("drop_table"), "drop_table"),
        (statement("drop_schema"), "drop_schema"),
        (statement("truncate"), "truncate"),
        (statement("delete", has_where=False), "delete_without_where"),
        (statement("update", has_where=True, where_always_true=True), "update_without_where"),
        (
            statement("alter_table", flags=frozenset({"alter_table_drop_column"})),
            "alter_table_drop_column",
        ),
        (statement("do"), "dynamic_sql"),
    ],
)
def test_dana_needs_approval_for_destructive_statements(
    demo: PolicyEngine, stmt: StatementInfo, guardrail: str
) -> None:
    decision = demo.decide(DANA, [stmt])
    assert isinstance(decision, RequireApproval)
    assert decision.rule == f"guardrail.{guardrail}"
    assert decision.approver_groups == ("dba",)


@pytest.mark.parametrize(
    "stmt",
    [
        statement("drop_database"),
        statement("grant"),
        statement("alter_system"),
        statement("set_role"),
        statement("copy", flags=frozenset({"copy_program"})),
        statement("select", functions=("pg_read_file",)),
    ],
)
def test_dana_is_still_stopped_by_deny_guardrails(demo: PolicyEngine, stmt: StatementInfo) -> None:
    decision = demo.decide(DANA, [stmt])
    assert isinstance(decision, Deny)
    assert decision.rule.startswith("guardrail.")


def test_agent_selects_with_a_row_cap_and_sees_tokens(demo: PolicyEngine) -> None:
    assert demo.decide(AGENT, [select()]) == Allow(
        "reporting-agent-select", Obligations(read_only=True, max_rows=1000, mask_with="hash")
    )
    assert demo.connect(AGENT) == SessionPlan("agents-readonly-credential", "readonly", True)


@pytest.mark.parametrize("kind", ["insert", "update", "delete", "explain", "set", "do", "copy"])
def test_agent_only_selects(demo: PolicyEngine, kind: str) -> None:
    assert isinstance(demo.decide(AGENT, [statement(kind, has_where=True)]), Deny)


@pytest.mark.parametrize("kind", ["transaction", "show"])
def test_agent_may_use_what_drivers_send_on_their_own(demo: PolicyEngine, kind: str) -> None:
    assert isinstance(demo.decide(AGENT, [statement(kind)]), Allow)


def test_everyone_else_is_denied(demo: PolicyEngine) -> None:
    assert isinstance(demo.decide(STRANGER, [select()]), Deny)
    assert demo.connect(STRANGER) == SessionPlan()
    for context in (ALICE, DANA):
        assert demo.connect(context) == SessionPlan()


def test_the_demo_target_name_matters(demo: PolicyEngine) -> None:
    elsewhere: ConnectionContext = connection("alice", ("analysts",), target="other")
    assert isinstance(demo.decide(elsewhere, [select()]), Deny)

"""The built-in guardrail pack: each guardrail, where it is on, and how a policy changes it."""

from __future__ import annotations

import pytest

from bastion.pipeline.decision import Allow, Deny, RequireApproval
from bastion.policy.guardrails import GUARDRAILS
from bastion.sql.analyze import analyze
from bastion.sql.statement import CopyInfo, StatementInfo

from .conftest import PRODUCTION, STAGING, connection, engine, statement

# For each guardrail: statements it must stop, and look-alikes it must let through.
CASES: dict[str, tuple[list[StatementInfo], list[StatementInfo]]] = {
    "drop_table": ([statement("drop_table")], [statement("drop_view"), statement("create_table")]),
    "drop_schema": ([statement("drop_schema")], [statement("drop_table")]),
    "drop_database": ([statement("drop_database")], [statement("drop_schema")]),
    "truncate": ([statement("truncate")], [statement("delete", has_where=True)]),
    "update_without_where": (
        [
            statement("update", has_where=False),
            statement("update", has_where=True, where_always_true=True),
            statement("update"),  # WHERE not reported: counts as missing
        ],
        [statement("update", has_where=True), statement("select", has_where=False)],
    ),
    "delete_without_where": (
        [
            statement("delete", has_where=False),
            statement("delete", has_where=True, where_always_true=True),
            statement("delete"),
        ],
        [statement("delete", has_where=True), statement("update", has_where=True)],
    ),
    "alter_table_drop_column": (
        [statement("alter_table", flags=frozenset({"alter_table_drop_column"}))],
        [statement("alter_table")],
    ),
    "role_management": (
        [
            statement(kind)
            for kind in (
                "grant",
                "revoke",
                "grant_role",
                "revoke_role",
                "create_role",
                "alter_role",
                "drop_role",
                "alter_default_privileges",
                "reassign_owned",
                "drop_owned",
            )
        ],
        [statement("create_table"), statement("select")],
    ),
    "copy_program": (
        [
            statement("copy", flags=frozenset({"copy_program"})),
            statement("copy", copy=CopyInfo("to", "program", "gzip > /tmp/x")),
        ],
        [statement("copy", copy=CopyInfo("to", "stdout"))],
    ),
    "copy_server_file": (
        [
            statement("copy", flags=frozenset({"copy_server_file"})),
            statement("copy", copy=CopyInfo("from", "file", "/etc/passwd")),
        ],
        [statement("copy", copy=CopyInfo("from", "stdin"))],
    ),
    "server_file_functions": (
        [
            statement("select", flags=frozenset({"server_file_function"})),
            statement("select", functions=("pg_read_file",)),
            statement("select", functions=("pg_catalog.pg_ls_dir",)),
        ],
        [statement("select", functions=("lower",))],
    ),
    "large_objects": (
        [
            statement("select", flags=frozenset({"large_object_function"})),
            statement("select", functions=("lo_import",)),
        ],
        [statement("select", functions=("lower",))],
    ),
    "dblink_and_foreign_servers": (
        [
            statement("select", flags=frozenset({"dblink"})),
            statement("create_foreign_server", flags=frozenset({"foreign_server"})),
            statement("create_foreign_server"),
            statement("select", functions=("dblink_exec",)),
            statement("create_user_mapping"),
            statement("create_foreign_table"),
            statement("import_foreign_schema"),
            statement("create_foreign_data_wrapper"),
        ],
        [statement("select", functions=("lower",)), statement("create_server_side_thing")],
    ),
    "alter_system": (
        [statement("alter_system"), statement("other", flags=frozenset({"alter_system"}))],
        [statement("set")],
    ),
    "set_role": (
        [
            statement("set_role"),
            statement("set_session_authorization"),
            statement("select", flags=frozenset({"set_config_role"})),
            statement("set", flags=frozenset({"set_role"})),
            statement("set", flags=frozenset({"session_authorization"})),
            statement("select", flags=frozenset({"set_config_dynamic"})),
            statement("select", flags=frozenset({"setting:role"})),
        ],
        [statement("set", flags=frozenset({"setting:search_path"})), statement("reset")],
    ),
    "security_definer": (
        [statement("create_function", flags=frozenset({"security_definer"}))],
        [statement("create_function")],
    ),
    "load": (
        [statement("load"), statement("other", flags=frozenset({"load"}))],
        [statement("set")],
    ),
    "function_call": (
        [statement("function_call", flags=frozenset({"fastpath"}))],
        [statement("call"), statement("select", functions=("lo_creat",))],
    ),
    "dynamic_sql": (
        [
            statement("do"),
            statement("do", flags=frozenset({"do_block"})),
            statement("create_function", flags=frozenset({"dynamic_sql"})),
            statement("create_function", flags=frozenset({"unanalyzable_body"})),
            statement("call", dynamic_sql=True),
            statement("do", flags=frozenset({"do_other_language"})),
            statement("create_function", flags=frozenset({"function_other_language"})),
        ],
        [statement("create_function"), statement("call")],
    ),
}

OPEN = """
version: 1
default_effect: allow
"""


def test_every_guardrail_has_cases() -> None:
    assert set(CASES) == set(GUARDRAILS)


def test_every_guardrail_explains_itself() -> None:
    for guardrail in GUARDRAILS.values():
        assert guardrail.reason and guardrail.hint and guardrail.summary, guardrail.id


@pytest.mark.parametrize("guardrail_id", sorted(CASES))
def test_guardrail_stops_its_statements_in_production(guardrail_id: str) -> None:
    stopped, _ = CASES[guardrail_id]
    policy_engine = engine(OPEN)
    for stmt in stopped:
        decision = policy_engine.decide(connection(labels=PRODUCTION), [stmt])
        assert isinstance(decision, Deny | RequireApproval), stmt
        assert decision.rule == f"guardrail.{guardrail_id}", stmt
        assert decision.reason


@pytest.mark.parametrize("guardrail_id", sorted(CASES))
def test_guardrail_lets_look_alikes_through(guardrail_id: str) -> None:
    _, passed = CASES[guardrail_id]
    only_this_one = f"""
    version: 1
    default_effect: allow
    guardrails:
      enabled: off
      overrides:
        {guardrail_id}: {{enabled: true}}
    """
    policy_engine = engine(only_this_one)
    for stmt in passed:
        decision = policy_engine.decide(connection(labels=PRODUCTION), [stmt])
        assert isinstance(decision, Allow), (stmt, decision)


@pytest.mark.parametrize("guardrail_id", sorted(CASES))
def test_guardrail_is_off_outside_production_under_auto(guardrail_id: str) -> None:
    stopped, _ = CASES[guardrail_id]
    policy_engine = engine(OPEN)
    for labels in (STAGING, {}):
        for stmt in stopped:
            assert isinstance(policy_engine.decide(connection(labels=labels), [stmt]), Allow)


@pytest.mark.parametrize("guardrail_id", sorted(CASES))
def test_guardrail_can_be_disabled(guardrail_id: str) -> None:
    stopped, _ = CASES[guardrail_id]
    text = f"""
    version: 1
    default_effect: allow
    guardrails:
      overrides:
        {guardrail_id}: {{enabled: false}}
    """
    policy_engine = engine(text)
    for stmt in stopped:
        assert isinstance(policy_engine.decide(connection(labels=PRODUCTION), [stmt]), Allow)


def test_default_effects() -> None:
    policy_engine = engine(OPEN)
    for guardrail_id, (stopped, _) in CASES.items():
        decision = policy_engine.decide(connection(labels=PRODUCTION), [stopped[0]])
        expected = RequireApproval if guardrail_id == "dynamic_sql" else Deny
        assert isinstance(decision, expected), guardrail_id


def test_guardrails_on_everywhere() -> None:
    policy_engine = engine("version: 1\ndefault_effect: allow\nguardrails: {enabled: on}\n")
    decision = policy_engine.decide(connection(labels={}), [statement("truncate")])
    assert isinstance(decision, Deny)
    assert decision.rule == "guardrail.truncate"


def test_guardrails_off_everywhere() -> None:
    policy_engine = engine("version: 1\ndefault_effect: allow\nguardrails: {enabled: off}\n")
    decision = policy_engine.decide(connection(labels=PRODUCTION), [statement("truncate")])
    assert decision == Allow("default")


def test_a_forced_guardrail_applies_while_the_pack_is_off() -> None:
    text = """
    version: 1
    default_effect: allow
    guardrails:
      enabled: off
      overrides:
        truncate: {enabled: true}
    """
    policy_engine = engine(text)
    assert isinstance(policy_engine.decide(connection(), [statement("truncate")]), Deny)
    assert isinstance(policy_engine.decide(connection(), [statement("drop_table")]), Allow)


def test_override_effect_and_approvers() -> None:
    text = """
    version: 1
    default_effect: allow
    guardrails:
      approvers: {groups: [dba]}
      overrides:
        drop_table: {effect: require_approval}
        truncate: {effect: require_approval, approvers: {groups: [owners], min: 2}}
        dynamic_sql: {effect: deny, reason: no DO here, hint: ask}
    """
    policy_engine = engine(text)
    prod = connection(labels=PRODUCTION)
    assert policy_engine.decide(prod, [statement("drop_table")]) == RequireApproval(
        "guardrail.drop_table", GUARDRAILS["drop_table"].reason, ("dba",), 1
    )
    assert policy_engine.decide(prod, [statement("truncate")]) == RequireApproval(
        "guardrail.truncate", GUARDRAILS["truncate"].reason, ("owners",), 2
    )
    assert policy_engine.decide(prod, [statement("do")]) == Deny(
        "guardrail.dynamic_sql", "no DO here", "ask"
    )


def test_override_to_allow_restricts_nothing() -> None:
    text = """
    version: 1
    default_effect: allow
    guardrails:
      overrides:
        truncate: {effect: allow}
    """
    assert engine(text).decide(connection(labels=PRODUCTION), [statement("truncate")]) == Allow(
        "default"
    )


def test_guardrail_deny_beats_a_user_allow() -> None:
    text = """
    version: 1
    rules:
      - id: dba-everything
        effect: allow
    """
    decision = engine(text).decide(connection(labels=PRODUCTION), [statement("drop_table")])
    assert isinstance(decision, Deny)
    assert decision.rule == "guardrail.drop_table"


def test_guardrail_approval_does_not_grant_what_no_rule_allows() -> None:
    text = """
    version: 1
    guardrails:
      overrides:
        drop_table: {effect: require_approval}
    rules:
      - id: dba
        match: {groups: [dba]}
        effect: allow
    """
    policy_engine = engine(text)
    analyst = connection(groups=("analysts",), labels=PRODUCTION)
    dba = connection(groups=("dba",), labels=PRODUCTION)
    assert isinstance(policy_engine.decide(analyst, [statement("drop_table")]), Deny)
    assert isinstance(policy_engine.decide(dba, [statement("drop_table")]), RequireApproval)


def test_user_deny_beats_a_guardrail_approval() -> None:
    text = """
    version: 1
    default_effect: allow
    rules:
      - {id: no-do, match: {statements: [do]}, effect: deny}
    """
    decision = engine(text).decide(connection(labels=PRODUCTION), [statement("do")])
    assert isinstance(decision, Deny)
    assert decision.rule == "no-do"


def test_guardrails_through_the_analyzer() -> None:
    decision = engine(OPEN).decide(connection(labels=PRODUCTION), analyze("TRUNCATE orders"))
    assert isinstance(decision, Deny)
    assert decision.rule == "guardrail.truncate"


def test_several_statements_cannot_hide_a_guarded_one() -> None:
    decision = engine(OPEN).decide(
        connection(labels=PRODUCTION), [statement("select"), statement("drop_table")]
    )
    assert isinstance(decision, Deny)
    assert decision.rule == "guardrail.drop_table"

"""Every `match` key, globs, and the fail-closed reading of tables, columns and functions."""

from __future__ import annotations

from typing import Any

import pytest

from bastion.identity.records import IdentityKind
from bastion.pipeline.context import ConnectionContext
from bastion.pipeline.decision import Allow, Deny
from bastion.policy.match import GlobSet
from bastion.sql.statement import ColumnRef, StatementInfo

from .conftest import connection, engine, statement, table


def allowed(match: str, context: ConnectionContext, stmt: StatementInfo) -> bool:
    text = f"""
    version: 1
    rules:
      - id: r
        match: {match}
        effect: allow
    """
    decision = engine(text).decide(context, [stmt])
    return isinstance(decision, Allow)


def denied(match: str, context: ConnectionContext, stmt: StatementInfo) -> bool:
    text = f"""
    version: 1
    default_effect: allow
    guardrails: {{enabled: off}}
    rules:
      - id: r
        match: {match}
        effect: deny
    """
    decision = engine(text).decide(context, [stmt])
    return isinstance(decision, Deny)


def test_globs() -> None:
    globs = GlobSet(["alice", "svc-*", "bot-?", "team[12]"])
    assert globs("alice")
    assert globs("svc-etl")
    assert globs("bot-a")
    assert globs("team2")
    assert not globs("Alice")  # case-sensitive
    assert not globs("bot-ab")
    assert not globs("team3")
    assert not globs("xalice")


def test_empty_match_matches_everything() -> None:
    assert allowed("{}", connection(), statement("select"))


@pytest.mark.parametrize(
    ("match", "context", "expected"),
    [
        ("{users: [alice]}", connection(user="alice"), True),
        ("{users: [alice]}", connection(user="bob"), False),
        ('{users: ["svc-*"]}', connection(user="svc-etl"), True),
        ('{users: ["svc-*", bob]}', connection(user="bob"), True),
        ("{groups: [dba]}", connection(groups=("analysts", "dba")), True),
        ("{groups: [dba]}", connection(groups=("analysts",)), False),
        ("{groups: [dba]}", connection(groups=()), False),
        ('{groups: ["team-*"]}', connection(groups=("team-red",)), True),
        ("{kinds: [agent]}", connection(kind=IdentityKind.AGENT), True),
        ("{kinds: [agent, service]}", connection(kind=IdentityKind.SERVICE), True),
        ("{kinds: [agent]}", connection(kind=IdentityKind.HUMAN), False),
        ("{targets: [demo]}", connection(target="demo"), True),
        ("{targets: [demo]}", connection(target="demo2"), False),
        ('{targets: ["prod-*"]}', connection(target="prod-eu"), True),
        (
            "{target_labels: {environment: production}}",
            connection(labels={"environment": "production"}),
            True,
        ),
        (
            "{target_labels: {environment: production}}",
            connection(labels={"environment": "staging"}),
            False,
        ),
        ("{target_labels: {environment: production}}", connection(labels={}), False),
        (
            "{target_labels: {environment: production, region: 'eu-*'}}",
            connection(labels={"environment": "production", "region": "eu-west"}),
            True,
        ),
        (
            "{target_labels: {environment: production, region: 'eu-*'}}",
            connection(labels={"environment": "production", "region": "us-east"}),
            False,
        ),
        # Every key given must match.
        ("{users: [alice], groups: [dba]}", connection(user="alice", groups=("x",)), False),
        ("{users: [alice], groups: [dba]}", connection(user="alice", groups=("dba",)), True),
    ],
)
def test_connection_keys(match: str, context: ConnectionContext, expected: bool) -> None:
    assert allowed(match, context, statement("select")) is expected


@pytest.mark.parametrize(
    ("patterns", "kind", "expected"),
    [
        ("[select]", "select", True),
        ("[select]", "insert", False),
        ('["drop_*"]', "drop_table", True),
        ('["drop_*"]', "create_table", False),
        ("[select, show]", "show", True),
    ],
)
def test_statement_kinds(patterns: str, kind: str, expected: bool) -> None:
    assert allowed(f"{{statements: {patterns}}}", connection(), statement(kind)) is expected


def tables(*names: str, written: tuple[str, ...] = ()) -> StatementInfo:
    return statement(
        "select",
        tables_read=tuple(table(n) for n in names),
        tables_written=tuple(table(n) for n in written),
    )


@pytest.mark.parametrize(
    ("patterns", "stmt", "expected"),
    [
        ('["public.customers"]', tables("public.customers"), True),
        ('["public.customers"]', tables("sales.customers"), False),
        ('["customers"]', tables("sales.customers"), True),  # unqualified: any schema
        ('["customers"]', tables("customers"), True),
        ('["audit.*"]', tables("audit.log"), True),
        ('["audit.*"]', tables("public.log"), False),
        ('["public.*"]', tables("public.a", "public.b"), True),
        # Allow rules need every table covered: one more table is not allowed along.
        ('["public.customers"]', tables("public.customers", "hr.salaries"), False),
        ('["public.customers"]', tables("public.customers", written=("hr.salaries",)), False),
        # An unqualified reference's schema depends on search_path: it does not match a
        # qualified pattern in an allow rule.
        ('["public.customers"]', tables("customers"), False),
        # No tables at all does not satisfy a rule that names tables.
        ('["public.*"]', statement("select"), False),
    ],
)
def test_tables_in_allow_rules(patterns: str, stmt: StatementInfo, expected: bool) -> None:
    assert allowed(f"{{tables: {patterns}}}", connection(), stmt) is expected


@pytest.mark.parametrize(
    ("patterns", "stmt", "expected"),
    [
        ('["hr.salaries"]', tables("hr.salaries"), True),
        ('["hr.salaries"]', tables("public.orders", "hr.salaries"), True),  # any one is enough
        ('["hr.salaries"]', tables("public.orders"), False),
        ('["hr.salaries"]', tables("salaries"), True),  # could be hr.salaries via search_path
        ('["hr.salaries"]', tables(written=("hr.salaries",)), True),
        ('["salaries"]', tables("other.salaries"), True),
        ('["hr.*"]', statement("select"), False),
    ],
)
def test_tables_in_deny_rules(patterns: str, stmt: StatementInfo, expected: bool) -> None:
    assert denied(f"{{tables: {patterns}}}", connection(), stmt) is expected


def columns(*refs: tuple[str, str | None]) -> StatementInfo:
    return statement(
        "select",
        columns=tuple(
            ColumnRef(name, "projection", table(t) if t is not None else None) for name, t in refs
        ),
    )


@pytest.mark.parametrize(
    ("patterns", "stmt", "expected"),
    [
        ('["customers.ssn"]', columns(("ssn", "public.customers")), True),
        ('["customers.ssn"]', columns(("ssn", "customers")), True),
        ('["customers.ssn"]', columns(("email", "customers")), False),
        ('["customers.ssn"]', columns(("ssn", "orders")), False),
        ('["*.email"]', columns(("email", "public.users")), True),
        ('["*.email"]', columns(("email", None)), True),
        ('["public.customers.ssn"]', columns(("ssn", "sales.customers")), False),
        ('["public.customers.ssn"]', columns(("ssn", "public.customers")), True),
        ('["ssn"]', columns(("ssn", None)), True),
        # Fail closed: SELECT * and unresolved columns may be the one named.
        ('["customers.ssn"]', columns(("*", "customers")), True),
        ('["customers.ssn"]', columns(("ssn", None)), True),
        ('["customers.ssn"]', columns(("*", None)), True),
        ('["customers.ssn"]', columns(("id", None)), False),
    ],
)
def test_columns_in_deny_rules(patterns: str, stmt: StatementInfo, expected: bool) -> None:
    assert denied(f"{{columns: {patterns}}}", connection(), stmt) is expected


@pytest.mark.parametrize(
    ("patterns", "stmt", "expected"),
    [
        ('["customers.name", "customers.id"]', columns(("name", "customers")), True),
        (
            '["customers.name"]',
            columns(("name", "customers"), ("ssn", "customers")),
            False,
        ),
        ('["customers.name"]', columns(("*", "customers")), False),
        ('["customers.*"]', columns(("*", "customers")), True),
        ('["customers.name"]', columns(("name", None)), False),
        ('["*.name"]', columns(("name", None)), True),
        ('["customers.name"]', statement("select"), False),
    ],
)
def test_columns_in_allow_rules(patterns: str, stmt: StatementInfo, expected: bool) -> None:
    assert allowed(f"{{columns: {patterns}}}", connection(), stmt) is expected


def calls(*names: str) -> StatementInfo:
    return statement("select", functions=names)


@pytest.mark.parametrize(
    ("patterns", "stmt", "expected"),
    [
        ('["pg_read_file"]', calls("pg_read_file"), True),
        ('["pg_read_file"]', calls("pg_catalog.pg_read_file"), True),
        ('["pg_catalog.pg_read_file"]', calls("pg_read_file"), True),
        ('["PG_READ_FILE"]', calls("pg_read_file"), True),  # patterns are lower-cased
        ('["dblink*"]', calls("lower", "dblink_exec"), True),
        ('["dblink*"]', calls("lower"), False),
    ],
)
def test_functions_in_deny_rules(patterns: str, stmt: StatementInfo, expected: bool) -> None:
    assert denied(f"{{functions: {patterns}}}", connection(), stmt) is expected


@pytest.mark.parametrize(
    ("patterns", "stmt", "expected"),
    [
        ('["lower", "upper"]', calls("lower"), True),
        ('["lower"]', calls("lower", "pg_sleep"), False),
        ('["pg_catalog.lower"]', calls("lower"), False),
        ('["lower"]', calls("pg_catalog.lower"), True),
    ],
)
def test_functions_in_allow_rules(patterns: str, stmt: StatementInfo, expected: bool) -> None:
    assert allowed(f"{{functions: {patterns}}}", connection(), stmt) is expected


def test_all_keys_together() -> None:
    match: dict[str, Any] = {
        "users": ["alice"],
        "groups": ["analysts"],
        "kinds": ["human"],
        "targets": ["demo"],
        "target_labels": {"environment": "production"},
        "statements": ["select"],
        "tables": ["public.customers"],
        "columns": ["customers.*"],
        "functions": ["lower"],
    }
    stmt = statement(
        "select",
        tables_read=(table("public.customers"),),
        columns=(ColumnRef("email", "projection", table("public.customers")),),
        functions=("lower",),
    )
    context = connection(labels={"environment": "production"})
    assert allowed(str(match), context, stmt)
    for key in match:
        changed = dict(match)
        changed[key] = {
            "kinds": ["agent"],
            "target_labels": {"environment": "x"},
        }.get(key, ["nothing-like-it"])
        assert not allowed(str(changed), context, stmt), key

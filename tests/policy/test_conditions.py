"""CEL conditions: the variables, ip_in, time windows, and failing closed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import cel
import pytest

from bastion.identity.records import IdentityKind
from bastion.pipeline.context import ConnectionContext
from bastion.pipeline.decision import Allow, Deny
from bastion.policy.cel import STATEMENT_VARIABLES, compile_condition, field_use, ip_in
from bastion.policy.context import Activation, connection_values
from bastion.sql.statement import ColumnRef, CopyInfo, StatementInfo

from .conftest import MONDAY_1030, connection, engine, statement, table


def when_allows(
    condition: str, context: ConnectionContext, stmt: StatementInfo, now: float
) -> bool:
    text = f"""
    version: 1
    rules:
      - id: r
        when: {condition!r}
        effect: allow
    """
    return isinstance(engine(text, now=now).decide(context, [stmt]), Allow)


def holds(condition: str, context: ConnectionContext | None = None, **fields: Any) -> bool:
    kind = str(fields.pop("kind", "select"))
    return when_allows(condition, context or connection(), statement(kind, **fields), MONDAY_1030)


def at(year: int, month: int, day: int, hour: int, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


# -- the variables ----------------------------------------------------------------------------


def test_identity_variables() -> None:
    context = connection(user="alice", groups=("analysts", "oncall"), kind=IdentityKind.AGENT)
    assert holds('identity.name == "alice"', context)
    assert holds('"oncall" in identity.groups', context)
    assert holds('identity.kind == "agent"', context)
    assert holds('identity.auth_method == "scram-sha-256"', context)
    assert not holds('identity.name == "bob"', context)


def test_source_variables() -> None:
    context = connection(ip="10.1.2.3", port=5555, tls="TLSv1.3")
    assert holds('source.ip == "10.1.2.3"', context)
    assert holds("source.port == 5555", context)
    assert holds("source.tls", context)
    assert holds('source.tls_version == "TLSv1.3"', context)
    plain = connection(tls=None)
    assert holds("!source.tls", plain)
    assert holds('source.tls_version == ""', plain)


def test_target_variables() -> None:
    context = connection(target="demo", labels={"environment": "production"})
    assert holds('target.name == "demo"', context)
    assert holds('target.labels.environment == "production"', context)
    assert holds('"environment" in target.labels', context)
    assert not holds('"region" in target.labels', context)


def test_statement_variables() -> None:
    fields: dict[str, Any] = {
        "kind": "update",
        "tables_read": (table("public.orders"),),
        "tables_written": (table("public.customers"), table("orders")),
        "columns": (
            ColumnRef("email", "assignment", table("public.customers")),
            ColumnRef("id", "where", None),
        ),
        "functions": ("lower",),
        "has_where": True,
        "where_always_true": True,
        "flags": frozenset({"b_flag", "a_flag"}),
        "object_type": "table",
        "modifying_cte": True,
        "dynamic_sql": True,
        "copy": CopyInfo("to", "program", "gzip", query=True),
    }
    assert holds('statement.kind == "update"', **fields)
    assert holds('statement.tables == ["public.orders", "public.customers", "orders"]', **fields)
    assert holds('statement.tables_read == ["public.orders"]', **fields)
    assert holds('"orders" in statement.tables_written', **fields)
    assert holds('statement.columns == ["public.customers.email", "id"]', **fields)
    assert holds('statement.functions == ["lower"]', **fields)
    assert holds("statement.has_where && statement.where_always_true", **fields)
    assert holds('statement.flags == ["a_flag", "b_flag"]', **fields)
    assert holds('statement.object_type == "table"', **fields)
    assert holds("statement.modifying_cte && statement.dynamic_sql", **fields)
    assert holds('statement.copy.target == "program" && statement.copy.path == "gzip"', **fields)
    assert holds('statement.copy.direction == "to" && statement.copy.query', **fields)


def test_statement_defaults_read_naturally() -> None:
    assert holds("!statement.has_where")  # not applicable reads as false
    assert holds('statement.copy.target == ""')
    assert holds('statement.object_type == ""')
    assert holds("size(statement.tables) == 0")


def test_macros_over_lists() -> None:
    fields: dict[str, Any] = {"tables_read": (table("audit.log"), table("public.x"))}
    assert holds('statement.tables.exists(t, t.startsWith("audit."))', **fields)
    assert not holds('statement.tables.all(t, t.startsWith("audit."))', **fields)


# -- ip_in ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "cidrs", "expected"),
    [
        ("10.1.2.3", "10.0.0.0/8", True),
        ("11.1.2.3", "10.0.0.0/8", False),
        ("192.168.1.7", ["10.0.0.0/8", "192.168.1.0/24"], True),
        ("10.1.2.3", "10.1.2.3/32", True),
        ("10.1.2.3", "10.1.2.3", True),
        ("2001:db8::1", "2001:db8::/32", True),
        ("2001:db9::1", "2001:db8::/32", False),
        ("10.1.2.3", "2001:db8::/32", False),
        ("2001:db8::1", "10.0.0.0/8", False),
        ("::ffff:10.1.2.3", "10.0.0.0/8", True),  # IPv4 client on a dual-stack socket
        ("fe80::1%eth0", "fe80::/10", True),
        ("::1", "::1/128", True),
    ],
)
def test_ip_in(address: str, cidrs: str | list[str], expected: bool) -> None:
    assert ip_in(address, cidrs) is expected


@pytest.mark.parametrize(("address", "cidrs"), [("nope", "10.0.0.0/8"), ("10.1.2.3", "10.0.0/33")])
def test_ip_in_rejects_malformed_input(address: str, cidrs: str) -> None:
    with pytest.raises(ValueError):
        ip_in(address, cidrs)


def test_ip_in_in_both_call_styles() -> None:
    inside, outside = connection(ip="10.9.8.7"), connection(ip="172.16.0.1")
    for condition in ('source.ip_in("10.0.0.0/8")', 'ip_in(source.ip, "10.0.0.0/8")'):
        assert holds(condition, inside), condition
        assert not holds(condition, outside), condition


def test_ip_in_with_ipv6_sources() -> None:
    assert holds('source.ip_in("2001:db8::/32")', connection(ip="2001:db8::42"))
    assert not holds('source.ip_in("2001:db8::/32")', connection(ip="2001:db9::42"))
    assert holds('source.ip_in(["10.0.0.0/8", "fd00::/8"])', connection(ip="fd12::1"))


# -- time windows -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (at(2024, 1, 1, 6, 59), False),
        (at(2024, 1, 1, 7, 0), True),
        (at(2024, 1, 1, 19, 59), True),
        (at(2024, 1, 1, 20, 0), False),
        (at(2024, 1, 6, 12, 0), False),  # Saturday
        (at(2024, 1, 7, 12, 0), False),  # Sunday
        (at(2024, 1, 5, 12, 0), True),  # Friday
    ],
)
def test_office_hours_window(moment: float, expected: bool) -> None:
    condition = "time.weekday < 5 && time.hour >= 7 && time.hour < 20"
    assert when_allows(condition, connection(), statement("select"), moment) is expected


def test_time_fields() -> None:
    moment = at(2024, 2, 29, 13, 45)
    assert when_allows(
        'time.date == "2024-02-29" && time.minute == 45 && time.weekday == 3',
        connection(),
        statement("select"),
        moment,
    )


# -- failing closed ---------------------------------------------------------------------------

FAILING = [
    "1 / 0 == 1",
    'source.ip_in("not-a-cidr")',
    "target.labels.region == 'eu'",  # missing key
    "identity.name",  # not a boolean
    "int(identity.name) > 3",
]


@pytest.mark.parametrize("condition", FAILING)
def test_failing_condition_does_not_allow(condition: str) -> None:
    assert not holds(condition)


@pytest.mark.parametrize("condition", FAILING)
def test_failing_condition_denies(condition: str) -> None:
    text = f"""
    version: 1
    default_effect: allow
    guardrails: {{enabled: off}}
    rules:
      - id: r
        when: {condition!r}
        effect: deny
    """
    decision = engine(text).decide(connection(), [statement("select")])
    assert isinstance(decision, Deny)
    assert decision.rule == "r"


@pytest.mark.parametrize("condition", FAILING)
def test_failing_condition_requires_approval(condition: str) -> None:
    text = f"""
    version: 1
    default_effect: allow
    rules:
      - id: r
        when: {condition!r}
        effect: require_approval
    """
    decision = engine(text).decide(connection(), [statement("select")])
    assert type(decision).__name__ == "RequireApproval"


def test_failing_condition_is_reported_in_explain() -> None:
    text = """
    version: 1
    rules:
      - id: r
        when: 'target.labels.region == "eu"'
        effect: allow
    """
    explanation = engine(text).explain(connection(), [statement("select")])
    (rule,) = explanation.statements[0].rules
    assert not rule.matched
    assert rule.condition is not None
    assert rule.condition.error is not None
    assert "region" in rule.condition.error
    assert any("failed" in miss for miss in rule.misses)


# -- reading only the fields a policy uses ---------------------------------------------------


def test_field_use() -> None:
    assert field_use('statement.kind == "x" && source.ip_in("10.0.0.0/8")') == {
        "statement": frozenset({"kind"}),
        "source": None,
    }
    assert field_use("'statement.kind' == time.hour") == {"time": frozenset({"hour"})}
    assert field_use('"x" in statement') == {"statement": None}
    assert field_use("statement['kind'] == 'x'") == {"statement": None}
    assert field_use("statement.tables.exists(t, t == 'x') // identity.name") == {
        "statement": frozenset({"tables"})
    }
    assert field_use("r'statement\\' == identity.name") == {"identity": frozenset({"name"})}


NARROWING_CASES = [
    'statement.kind == "select" && identity.name == "alice"',
    "has(statement.kind) && has(time.hour)",
    'size(statement) > 3 && "ssn" in statement.columns',
    'source.ip_in("10.0.0.0/8") || target.labels.environment == "production"',
    "statement.tables.exists(statement, statement == 'public.x')",
    "time.hour >= 10 && time.weekday == 0 && statement.has_where == false",
    "identity.groups.exists(g, g.startsWith('an'))",
    "statement.copy.target == '' && !statement.where_always_true",
]


@pytest.mark.parametrize("source", NARROWING_CASES)
def test_narrowed_activation_gives_the_full_result(source: str) -> None:
    condition = compile_condition(source, STATEMENT_VARIABLES)
    context = connection(labels={"environment": "production"})
    stmt = statement("select", tables_read=(table("public.x"),))
    values = connection_values(context, MONDAY_1030)
    narrowed = Activation(values, stmt, condition.uses).evaluate(condition)
    everything = Activation(values, stmt, {name: None for name in STATEMENT_VARIABLES})
    assert narrowed == everything.evaluate(condition)
    assert narrowed.error is None


def test_narrowing_falls_back_to_every_field() -> None:
    # A use the token scan cannot see (the field name built at run time) still works.
    condition = compile_condition("statement['ki' + 'nd'] == 'select'", STATEMENT_VARIABLES)
    values = connection_values(connection(), MONDAY_1030)
    narrowed_badly = Activation(values, statement("select"), {"statement": frozenset({"tables"})})
    assert narrowed_badly.evaluate(condition).value is True


def test_conditions_are_compiled_once() -> None:
    first = compile_condition("time.hour > 3", STATEMENT_VARIABLES)
    assert compile_condition("time.hour > 3", STATEMENT_VARIABLES) is first
    assert isinstance(first.program, cel.Program)

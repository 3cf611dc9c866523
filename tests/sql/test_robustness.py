"""Analysis never raises, whatever the text; results are cached; and what it costs."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.sql.analyze import analyze, clear_cache
from bastion.sql.statement import StatementInfo

SQL_WORDS = st.sampled_from(
    [
        "SELECT",
        "FROM",
        "WHERE",
        "DROP",
        "TABLE",
        "DO",
        "$$",
        "$q$",
        "BEGIN",
        "END",
        "EXECUTE",
        "'",
        '"',
        "E'",
        "U&'",
        'U&"',
        "\\",
        ";",
        "--",
        "/*",
        "*/",
        "(",
        ")",
        "[",
        "]",
        ",",
        "=",
        "1",
        "$1",
        "t",
        "s.t",
        "COPY",
        "TO",
        "PROGRAM",
        "WITH",
        "AS",
        "INSERT",
        "INTO",
        "VALUES",
        "UPDATE",
        "SET",
        "DELETE",
        "PREPARE",
        "EXPLAIN",
        "ANALYZE",
        "CREATE",
        "FUNCTION",
        "RETURNS",
        "LANGUAGE",
        "plpgsql",
        "sql",
        "pg_read_file",
        "set_config",
        "ROLE",
        "é",
        "\n",
        " ",
        "\x00",
        "\ud800",
    ]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(SQL_WORDS, max_size=40).map(" ".join))
def test_sql_like_text_never_raises(sql: str) -> None:
    _check(sql)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_never_raises(sql: str) -> None:
    _check(sql)


def _check(sql: str) -> None:
    infos = analyze(sql)
    assert isinstance(infos, tuple)
    for info in infos:
        assert isinstance(info, StatementInfo)
        if info.kind == "unknown":
            assert info.error
        else:
            assert info.error is None


def test_deep_nesting_is_unknown_not_a_crash() -> None:
    for sql in (
        "SELECT " + " + ".join(["1"] * 20000),
        "SELECT ARRAY" + "[" * 3000 + "]" * 3000,
        "DO $$" + "BEGIN " * 3000 + "END; " * 3000 + "$$",
    ):
        (info,) = analyze(sql)
        assert info.kind == "unknown"
        assert info.error


def test_results_are_cached_by_text() -> None:
    sql = "SELECT a FROM cached_table WHERE id = $1"
    assert analyze(sql) is analyze(sql)
    assert analyze(sql) is not analyze(sql + " ")


def test_cost_of_analysis() -> None:
    """Prints what analysis costs here (run with -s to see it); never asserts a timing."""
    simple = "SELECT id, name FROM customers WHERE id = $1"
    join = (
        "WITH recent AS (SELECT customer_id, max(created) AS m FROM orders GROUP BY 1) "
        "SELECT c.name, o.total, r.m FROM customers c "
        "JOIN orders o ON o.customer_id = c.id JOIN recent r ON r.customer_id = c.id "
        "WHERE c.region = 'eu' ORDER BY r.m DESC LIMIT 10"
    )
    results = {}
    for label, sql in (("new simple SELECT", simple), ("new 3-way join + CTE", join)):
        rounds = 300
        start = time.perf_counter()
        for index in range(rounds):
            clear_cache()
            analyze(f"{sql} /* {index} */")
        results[label] = (time.perf_counter() - start) / rounds
    analyze(simple)
    rounds = 100_000
    start = time.perf_counter()
    for _ in range(rounds):
        analyze(simple)
    results["cached hit"] = (time.perf_counter() - start) / rounds
    for label, seconds in results.items():
        print(f"analyze, {label}: {seconds * 1e6:.1f} µs")
    assert analyze(simple)[0].kind == "select"

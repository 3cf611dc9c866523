"""Reusing an analysis across statements that differ only in literals must never change what
the analysis says: every pair below is analyzed with the first statement's analysis kept, and
must equal a fresh analysis of the second."""

from __future__ import annotations

import pytest

from bastion.sql.analyze import _shapes, analyze, clear_cache

PAIRS = [
    (
        "SELECT abalance FROM pgbench_accounts WHERE aid = 1;",
        "SELECT abalance FROM pgbench_accounts WHERE aid = 2;",
    ),
    ("DELETE FROM orders WHERE 1 = 2", "DELETE FROM orders WHERE 1 = 1"),
    (
        "UPDATE orders SET status = 'x' WHERE 'a' = 'b'",
        "UPDATE orders SET status = 'x' WHERE 'a' = 'a'",
    ),
    ("DELETE FROM orders WHERE id = 1 OR 1 = 0", "DELETE FROM orders WHERE id = 1 OR 1 = 1"),
    ("SELECT email, id FROM customers ORDER BY 2", "SELECT email, id FROM customers ORDER BY 1"),
    (
        "SELECT email, count(*) FROM customers GROUP BY 2",
        "SELECT email, count(*) FROM customers GROUP BY 1",
    ),
    ("SELECT set_config('application_name', 'x', false)", "SELECT set_config('role', 'x', false)"),
    ("SELECT pg_read_file('a.txt')", "SELECT pg_read_file('/etc/passwd')"),
    ("SELECT * FROM t WHERE x = 'it''s'", "SELECT * FROM t WHERE x = 'plain'"),
    ("INSERT INTO t (a) VALUES (1) RETURNING a", "INSERT INTO t (a) VALUES (2) RETURNING a"),
    ("SELECT 1", "SELECT 2"),
    ("SELECT 'x'::regclass", "SELECT 'pg_authid'::regclass"),
    ("SELECT dblink('host=a', 'SELECT 1')", "SELECT dblink('host=b', 'DROP TABLE x')"),
    ("SELECT  a FROM t WHERE b = 1 ;", "SELECT  a FROM t WHERE b = 22 ;"),
]


@pytest.mark.parametrize(("first", "second"), PAIRS)
def test_a_kept_analysis_equals_a_fresh_one(first: str, second: str) -> None:
    clear_cache()
    fresh = analyze(second)
    clear_cache()
    analyze(first)
    assert analyze(second) == fresh
    clear_cache()


def test_statements_that_differ_in_literals_share_one_analysis() -> None:
    clear_cache()
    first = analyze("SELECT abalance FROM pgbench_accounts WHERE aid = 1;")[0]
    second = analyze("SELECT abalance FROM pgbench_accounts WHERE aid = 2;")[0]
    assert len(_shapes) == 1
    assert second.text == "SELECT abalance FROM pgbench_accounts WHERE aid = 2"
    assert second.tables_read == first.tables_read and second.normalized == first.normalized
    clear_cache()


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM orders WHERE 1 = 1",  # a folded condition
        "SELECT a, b FROM t ORDER BY 2",  # a select-list position
        "SELECT set_config('role', 'x', false)",  # a function argument read as text
        "DO 'BEGIN NULL; END'",  # a code body
        "SELECT 1; SELECT 2",  # several statements
        "COPY t TO STDOUT",
    ],
)
def test_analyses_that_read_literals_are_not_kept_by_shape(sql: str) -> None:
    clear_cache()
    analyze(sql)
    assert _shapes == {}
    clear_cache()


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("SELECT set_config($1, $2, false)", "SELECT set_config('role', 'admin', false)"),
        ("DELETE FROM t WHERE $1", "DELETE FROM t WHERE true"),
        ("DELETE FROM t WHERE $1 = $2", "DELETE FROM t WHERE 1 = 1"),
        ("SELECT a, b FROM t ORDER BY $1", "SELECT a, b FROM t ORDER BY 2"),
    ],
)
def test_parameters_and_literals_never_share_an_analysis(first: str, second: str) -> None:
    clear_cache()
    fresh = analyze(second)
    clear_cache()
    analyze(first)
    assert analyze(second) == fresh
    analyze(second)
    assert analyze(first) == analyze(first)
    clear_cache()

"""Column references, the clause each appears in, and the table when it is certain."""

from __future__ import annotations

import pytest

from .helpers import columns, one

JOIN_QUERY = """
SELECT c.region, count(*) AS n, sum(o.total) OVER (PARTITION BY c.segment ORDER BY o.created)
FROM customers c JOIN orders o ON o.customer_id = c.id
WHERE o.status = 'paid'
GROUP BY c.region
HAVING sum(o.total) > 100
WINDOW w AS (PARTITION BY o.channel)
ORDER BY n DESC, c.name
"""


def test_columns_per_clause_in_a_join() -> None:
    assert columns(one(JOIN_QUERY)) == {
        ("region", "projection", "customers"),
        ("total", "projection", "orders"),
        ("segment", "window", "customers"),
        ("created", "window", "orders"),
        ("channel", "window", "orders"),
        ("customer_id", "join", "orders"),
        ("id", "join", "customers"),
        ("status", "where", "orders"),
        ("region", "group", "customers"),
        ("total", "having", "orders"),
        ("n", "order", None),  # an output alias, not a column of a table
        ("name", "order", "customers"),
    }


CASES = [
    # the only relation in scope resolves unqualified names
    (
        "SELECT email FROM customers WHERE id = $1",
        {("email", "projection", "customers"), ("id", "where", "customers")},
    ),
    ("SELECT a FROM s.t", {("a", "projection", "s.t")}),
    ("SELECT x.a FROM s.t x", {("a", "projection", "s.t")}),
    ("SELECT s.t.a FROM s.t", {("a", "projection", "s.t")}),
    # several relations: unqualified names stay unresolved
    ("SELECT a FROM t1, t2", {("a", "projection", None)}),
    # derived relations are never resolved to a table
    ("SELECT a FROM (SELECT a FROM t) sub", {("a", "projection", "t"), ("a", "projection", None)}),
    (
        "WITH x AS (SELECT a FROM t) SELECT x.a FROM x",
        {("a", "projection", "t"), ("a", "projection", None)},
    ),
    # stars
    ("SELECT * FROM t", {("*", "projection", "t")}),
    (
        "SELECT t.* FROM t JOIN u USING (id)",
        {("*", "projection", "t"), ("id", "join", "t"), ("id", "join", "u")},
    ),
    (
        "SELECT * FROM t JOIN u ON t.id = u.id",
        {
            ("*", "projection", "t"),
            ("*", "projection", "u"),
            ("id", "join", "t"),
            ("id", "join", "u"),
        },
    ),
    ("SELECT * FROM (SELECT 1) s", {("*", "projection", None)}),
    # a whole-row reference uses every column of the row
    (
        "SELECT row_to_json(c) FROM customers c",
        {("c", "projection", "customers"), ("*", "projection", "customers")},
    ),
    # correlated subquery: the outer relation is found by its alias
    (
        "SELECT a FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.x = t.y)",
        {("a", "projection", "t"), ("x", "where", "u"), ("y", "where", "t")},
    ),
    # subqueries report their own clauses
    (
        "SELECT a FROM t WHERE b IN (SELECT c FROM u ORDER BY d)",
        {
            ("a", "projection", "t"),
            ("b", "where", "t"),
            ("c", "projection", "u"),
            ("d", "order", "u"),
        },
    ),
    # DML
    (
        "UPDATE t SET a = b + 1 WHERE id = 2 RETURNING a",
        {
            ("a", "assignment", "t"),
            ("b", "values", "t"),
            ("id", "where", "t"),
            ("a", "returning", "t"),
        },
    ),
    (
        "UPDATE t SET (a, b) = (SELECT x, y FROM u) WHERE true",
        {
            ("a", "assignment", "t"),
            ("b", "assignment", "t"),
            ("x", "projection", "u"),
            ("y", "projection", "u"),
        },
    ),
    ("INSERT INTO t (a, b) VALUES (1, 2)", {("a", "assignment", "t"), ("b", "assignment", "t")}),
    ("INSERT INTO t (a) SELECT x FROM u", {("a", "assignment", "t"), ("x", "projection", "u")}),
    (
        "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = excluded.a + t.a",
        {
            ("a", "assignment", "t"),
            ("a", "other", "t"),
            ("a", "values", None),
            ("a", "values", "t"),
        },
    ),
    ("DELETE FROM t WHERE x = 1 RETURNING *", {("x", "where", "t"), ("*", "returning", "t")}),
    (
        "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED AND s.z > 0 THEN UPDATE SET v = s.v "
        "WHEN NOT MATCHED THEN INSERT (id) VALUES (s.id)",
        {
            ("id", "join", "t"),
            ("id", "join", "s"),
            ("z", "where", "s"),
            ("v", "assignment", "t"),
            ("v", "values", "s"),
            ("id", "assignment", "t"),
            ("id", "values", "s"),
        },
    ),
    ("VALUES (1, 2)", set()),
    ("SELECT * FROM generate_series(1, 3) g(n)", {("*", "projection", None)}),
    (
        "SELECT * FROM t, unnest(t.tags) tag",
        {("*", "projection", "t"), ("*", "projection", None), ("tags", "other", "t")},
    ),
    (
        "SELECT a FROM t GROUP BY GROUPING SETS ((a), (b))",
        {("a", "projection", "t"), ("a", "group", "t"), ("b", "group", "t")},
    ),
    (
        "SELECT DISTINCT ON (a) b FROM t LIMIT (SELECT n FROM cfg)",
        {("a", "other", "t"), ("b", "projection", "t"), ("n", "projection", "cfg")},
    ),
    ("COPY t (a, b) TO STDOUT", {("a", "projection", "t"), ("b", "projection", "t")}),
    ("COPY t FROM STDIN WHERE a > 0", {("*", "assignment", "t"), ("a", "where", "t")}),
]


@pytest.mark.parametrize(("sql", "expected"), CASES, ids=[c[0][:60] for c in CASES])
def test_columns(sql: str, expected: set[tuple[str, str, str | None]]) -> None:
    assert columns(one(sql)) == expected


def test_columns_have_a_known_clause() -> None:
    from bastion.sql.columns import CLAUSES

    for ref in one(JOIN_QUERY).columns:
        assert ref.clause in CLAUSES

"""Per-output-column lineage: the columns each column of a statement's result reads."""

from __future__ import annotations

import pytest

from bastion.sql.statement import OutputColumn, StatementInfo

from .helpers import one

# An output as (refs as {(name, table or None)}, flags): "plain", "star", "opaque" or "".
Shape = tuple[set[tuple[str, str | None]], str]


def shape(output: OutputColumn) -> Shape:
    refs = {(ref.name, ref.table.qualified if ref.table else None) for ref in output.refs}
    flags = [name for name in ("plain", "star", "opaque") if getattr(output, name)]
    return refs, " ".join(flags)


def shapes(info: StatementInfo) -> list[Shape] | None:
    return None if info.outputs is None else [shape(output) for output in info.outputs]


CASES: list[tuple[str, list[Shape] | None]] = [
    # plain references, qualified or with one relation in scope
    (
        "SELECT email, c.name FROM customers c",
        [({("email", "customers")}, "plain"), ({("name", "customers")}, "plain")],
    ),
    ("SELECT s.t.a FROM s.t", [({("a", "s.t")}, "plain")]),
    # qualified references in a join
    (
        "SELECT c.email, o.amount FROM customers c JOIN orders o ON o.customer_id = c.id",
        [({("email", "customers")}, "plain"), ({("amount", "orders")}, "plain")],
    ),
    # an unqualified name with several relations in scope: not certain
    (
        "SELECT email FROM customers c JOIN orders o ON o.customer_id = c.id",
        [({("email", None)}, "plain opaque")],
    ),
    ("SELECT id FROM a JOIN b USING (id)", [({("id", None)}, "plain opaque")]),
    # computed columns read only what their own expression reads
    (
        "SELECT upper(c.name), o.amount * 2, c.id FROM customers c JOIN orders o ON true",
        [
            ({("name", "customers")}, ""),
            ({("amount", "orders")}, ""),
            ({("id", "customers")}, "plain"),
        ],
    ),
    (
        "SELECT CASE WHEN ssn IS NULL THEN 'none' ELSE name END FROM customers",
        [({("ssn", "customers"), ("name", "customers")}, "")],
    ),
    (
        "SELECT coalesce(phone, email) FROM customers",
        [({("phone", "customers"), ("email", "customers")}, "")],
    ),
    # a cast is not plain
    (
        "SELECT email::text, CAST(id AS text) FROM customers",
        [({("email", "customers")}, ""), ({("id", "customers")}, "")],
    ),
    ("SELECT (c.address).city FROM customers c", [({("address", "customers")}, "")]),
    # columns the value depends on through a window or a FILTER
    (
        "SELECT sum(amount) OVER w FROM orders WINDOW w AS (PARTITION BY region)",
        [({("amount", "orders"), ("region", "orders")}, "")],
    ),
    (
        "SELECT count(*) FILTER (WHERE vip) FROM customers",
        [({("vip", "customers")}, "")],
    ),
    # no column at all: constants, functions without arguments, count(*)
    ("SELECT 1, 'x', now(), $1, count(*) FROM customers", [(set(), "")] * 5),
    ("SELECT 1", [(set(), "")]),
    # a subquery in the expression: opaque, with the outer columns still listed
    ("SELECT (SELECT max(ssn) FROM people) FROM customers", [(set(), "opaque")]),
    (
        "SELECT EXISTS (SELECT 1 FROM people p WHERE p.id = c.id) FROM customers c",
        [(set(), "opaque")],
    ),
    (
        "SELECT email IN (SELECT email FROM blocked) FROM customers",
        [({("email", "customers")}, "opaque")],
    ),
    ("SELECT ARRAY(SELECT ssn FROM people) FROM customers", [(set(), "opaque")]),
    # columns of derived relations: a subquery, a CTE, a function, VALUES
    ("SELECT s.email FROM (SELECT email FROM customers) s", [({("email", None)}, "plain opaque")]),
    (
        "WITH x AS (SELECT email FROM customers) SELECT email FROM x",
        [({("email", None)}, "plain opaque")],
    ),
    (
        "WITH customers AS (SELECT 1 AS email) SELECT email FROM customers",
        [({("email", None)}, "plain opaque")],
    ),
    (
        "WITH x AS (SELECT 1) SELECT email FROM public.customers",
        [({("email", "public.customers")}, "plain")],
    ),
    ("SELECT g FROM customers, generate_series(1, 3) g", [({("g", None), ("*", None)}, "opaque")]),
    ("SELECT v.a FROM (VALUES (1)) v (a)", [({("a", None)}, "plain opaque")]),
    # a derived relation beside a table makes an unqualified name uncertain
    ("SELECT email FROM customers, LATERAL (SELECT 1) s", [({("email", None)}, "plain opaque")]),
    # whole-row references
    (
        "SELECT row_to_json(c) FROM customers c",
        [({("c", "customers"), ("*", "customers")}, "opaque")],
    ),
    ("SELECT c::text FROM customers c", [({("c", "customers"), ("*", "customers")}, "opaque")]),
    ("SELECT c FROM customers c", [({("c", "customers"), ("*", "customers")}, "opaque")]),
    (
        "SELECT to_jsonb(c.*), ROW(c.*), count(c.*) FROM customers c",
        [({("*", "customers")}, "opaque")] * 3,
    ),
    # `*` over one base table
    ("SELECT * FROM customers", [({("*", "customers")}, "star")]),
    ("TABLE customers", [({("*", "customers")}, "star")]),
    ("SELECT c.*, 1 FROM customers c", [({("*", "customers")}, "star"), (set(), "")]),
    (
        "SELECT c.*, o.id FROM customers c JOIN orders o ON true",
        [({("*", "customers")}, "star"), ({("id", "orders")}, "plain")],
    ),
    # `*` that cannot be lined up with the result's columns
    ("SELECT * FROM customers c JOIN orders o ON o.customer_id = c.id", None),
    ("SELECT * FROM customers, orders", None),
    ("SELECT * FROM (SELECT email FROM customers) s", None),
    ("SELECT s.* FROM (SELECT email FROM customers) s", None),
    ("WITH x AS (SELECT email FROM customers) SELECT * FROM x", None),
    ("SELECT * FROM generate_series(1, 3)", None),
    ("SELECT (c.address).* FROM customers c", None),
    # DISTINCT, ORDER BY, GROUP BY change nothing
    (
        "SELECT DISTINCT region, count(*) FROM customers GROUP BY region ORDER BY 2 DESC",
        [({("region", "customers")}, "plain"), (set(), "")],
    ),
    # set operations: output i merges output i of every arm
    (
        "SELECT email FROM customers UNION SELECT name FROM staff",
        [({("email", "customers"), ("name", "staff")}, "")],
    ),
    (
        "SELECT email, 1 FROM customers INTERSECT SELECT s.x, 2 FROM (SELECT 1 AS x) s",
        [({("email", "customers"), ("x", None)}, "opaque"), (set(), "")],
    ),
    (
        "SELECT a FROM t UNION ALL SELECT b FROM u EXCEPT SELECT c FROM v",
        [({("a", "t"), ("b", "u"), ("c", "v")}, "")],
    ),
    ("SELECT a FROM t UNION SELECT a, b FROM u", None),
    ("SELECT * FROM t UNION SELECT a FROM u", None),
    ("SELECT a FROM t UNION SELECT * FROM u", None),
    ("SELECT a FROM t UNION SELECT * FROM u JOIN v ON true", None),
    ("SELECT email FROM customers UNION VALUES ('x')", [({("email", "customers")}, "")]),
    (
        "WITH x AS (SELECT 1 AS a) SELECT a FROM x UNION SELECT a FROM t",
        [({("a", None), ("a", "t")}, "opaque")],
    ),
    # VALUES: constants
    ("VALUES (1, 'a'), (2, 'b')", [(set(), ""), (set(), "")]),
    ("VALUES ((SELECT ssn FROM people LIMIT 1))", [(set(), "opaque")]),
    # RETURNING
    (
        "INSERT INTO customers (email) VALUES ('a') RETURNING id, upper(email)",
        [({("id", "customers")}, "plain"), ({("email", "customers")}, "")],
    ),
    ("DELETE FROM customers RETURNING *", [({("*", "customers")}, "star")]),
    (
        "DELETE FROM customers c RETURNING c.*, c.email",
        [({("*", "customers")}, "star"), ({("email", "customers")}, "plain")],
    ),
    (
        "UPDATE customers c SET name = 'x' FROM orders o WHERE o.customer_id = c.id "
        "RETURNING c.email, o.amount, name",
        [
            ({("email", "customers")}, "plain"),
            ({("amount", "orders")}, "plain"),
            ({("name", None)}, "plain opaque"),
        ],
    ),
    ("UPDATE customers c SET name = 'x' FROM orders o RETURNING *", None),
    (
        "UPDATE customers SET name = 'x' RETURNING old.name, new.*",
        [({("name", "customers")}, "plain"), ({("*", "customers")}, "star")],
    ),
    (
        "DELETE FROM customers RETURNING WITH (OLD AS before) before.ssn",
        [({("ssn", "customers")}, "plain")],
    ),
    # an `old` that is also a FROM item is not certainly the target
    ("DELETE FROM customers USING old RETURNING old.ssn", [({("ssn", None)}, "plain opaque")]),
    (
        "MERGE INTO customers c USING staff s ON c.id = s.id WHEN MATCHED THEN DELETE "
        "RETURNING merge_action(), c.email, s.name",
        [(set(), ""), ({("email", "customers")}, "plain"), ({("name", "staff")}, "plain")],
    ),
    (
        "WITH x AS (SELECT 1) DELETE FROM customers RETURNING (SELECT ssn FROM people)",
        [(set(), "opaque")],
    ),
    # COPY ... TO
    ("COPY customers TO STDOUT", [({("*", "customers")}, "star")]),
    (
        "COPY customers (email, name) TO STDOUT",
        [({("email", "customers")}, "plain"), ({("name", "customers")}, "plain")],
    ),
    ("COPY s.t TO '/tmp/t'", [({("*", "s.t")}, "star")]),
    (
        "COPY (SELECT email, upper(name) FROM customers) TO STDOUT",
        [({("email", "customers")}, "plain"), ({("name", "customers")}, "")],
    ),
    ("COPY (SELECT * FROM customers c JOIN orders o ON true) TO STDOUT", None),
    (
        "COPY (DELETE FROM customers RETURNING email) TO STDOUT",
        [({("email", "customers")}, "plain")],
    ),
    # statements without a result to line up with
    ("COPY customers FROM STDIN", None),
    ("INSERT INTO customers (email) VALUES ('a')", None),
    ("UPDATE customers SET name = 'x'", None),
    ("SELECT email INTO archive FROM customers", None),
    ("CREATE TABLE archive AS SELECT email FROM customers", None),
    ("EXPLAIN SELECT email FROM customers", None),
    ("DECLARE cur CURSOR FOR SELECT email FROM customers", None),
    ("SET search_path = public", None),
]


@pytest.mark.parametrize(("sql", "expected"), CASES, ids=[case[0] for case in CASES])
def test_outputs(sql: str, expected: list[Shape] | None) -> None:
    assert shapes(one(sql)) == expected


def test_output_refs_carry_their_clause() -> None:
    select = one("SELECT c.email FROM customers c").outputs
    returning = one("DELETE FROM customers RETURNING email").outputs
    assert select is not None and returning is not None
    assert [ref.clause for ref in select[0].refs] == ["projection"]
    assert [ref.clause for ref in returning[0].refs] == ["returning"]


def test_count_matches_the_select_list() -> None:
    info = one("SELECT a, b + 1, (SELECT 1), c.*, t.x FROM t, c")
    assert info.outputs is not None
    assert len(info.outputs) == 5


def test_columns_are_unchanged() -> None:
    # the lineage pass reports into `outputs` only
    info = one("SELECT upper(c.name) FROM customers c")
    assert [(ref.name, ref.clause) for ref in info.columns] == [("name", "projection")]


def test_prepared_statement_keeps_its_outputs() -> None:
    (inner,) = one("PREPARE q AS SELECT email FROM customers WHERE id = $1").inner
    assert shapes(inner) == [({("email", "customers")}, "plain")]

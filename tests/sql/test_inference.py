"""Inference columns (what a statement learns about columns without returning them) and
`moves_data` (statements that copy query results somewhere other than the client)."""

from __future__ import annotations

import pytest

from bastion.sql.statement import StatementInfo

from .helpers import columns, one


def inference(info: StatementInfo) -> set[tuple[str, str]]:
    return {(ref.name, ref.clause) for ref in info.inference_columns}


def resolved(info: StatementInfo) -> set[tuple[str, str, str | None]]:
    return {
        (ref.name, ref.clause, ref.table.qualified if ref.table else None)
        for ref in info.inference_columns
    }


C = "SELECT id FROM customers WHERE "

INFERENCE = [
    # conditions that reveal more than equality with a constant
    (C + "ssn LIKE '1%'", {("ssn", "where")}),
    (C + "ssn ILIKE '1%'", {("ssn", "where")}),
    (C + "ssn SIMILAR TO '1%'", {("ssn", "where")}),
    (C + "ssn > '5'", {("ssn", "where")}),
    (C + "ssn <= $1", {("ssn", "where")}),
    (C + "substr(ssn, 1, 1) = '1'", {("ssn", "where")}),
    (C + "length(email) = 10", {("email", "where")}),
    (C + "email ~ 'x'", {("email", "where")}),
    (C + "email !~* 'x'", {("email", "where")}),
    (C + "ssn BETWEEN '1' AND '2'", {("ssn", "where")}),
    (C + "ssn NOT BETWEEN $1 AND $2", {("ssn", "where")}),
    (C + "ssn = other_col", {("ssn", "where"), ("other_col", "where")}),
    (C + "ascii(ssn) < 50", {("ssn", "where")}),
    (C + "ssn::int = 5", {("ssn", "where")}),  # a cast can round: not the bare column
    (C + "ssn = 'a' || 'b'", {("ssn", "where")}),  # an expression, not a constant
    (C + "ssn IN ('a', other_col)", {("ssn", "where"), ("other_col", "where")}),
    (C + "ssn = ANY (ARRAY[other_col])", {("ssn", "where"), ("other_col", "where")}),
    (C + "ssn OPERATOR(myschema.=) 'x'", {("ssn", "where")}),  # not the built-in =
    (C + "length(email) IS NULL", {("email", "where")}),
    (C + "(ssn LIKE '1%') IS TRUE", {("ssn", "where")}),
    (C + "NOT (ssn LIKE '1%')", {("ssn", "where")}),
    (C + "id = 1 AND (ssn = '1' OR email > 'm')", {("email", "where")}),
    (C + "CASE WHEN ssn = '1' THEN true END", {("ssn", "where")}),
    # harmless: equality (or its negation) between the bare column and a constant
    (C + "ssn = '123-45-6789'", set()),
    (C + "ssn = $1", set()),
    (C + "'x' = ssn", set()),
    (C + "customers.ssn = $1::text", set()),
    (C + "ssn OPERATOR(pg_catalog.=) 'x'", set()),
    (C + "id = -5", set()),
    (C + "email IN ('a', 'b')", set()),
    (C + "email NOT IN ($1, $2)", set()),
    (C + "email = ANY ($1)", set()),
    (C + "email = ANY (ARRAY['a', 'b'])", set()),
    (C + "email <> ALL ($1)", set()),
    (C + "email <> 'a'", set()),
    (C + "email IS NULL", set()),
    (C + "email IS NOT NULL", set()),
    (C + "email IS NOT DISTINCT FROM $1", set()),
    (C + "email IS DISTINCT FROM 'a'", set()),
    (C + "active", set()),
    (C + "NOT active AND active IS TRUE", set()),
    (C + "(email = 'a') IS NOT FALSE", set()),
    # ORDER BY, GROUP BY, DISTINCT ON: any use
    ("SELECT id FROM customers ORDER BY ssn", {("ssn", "order")}),
    ("SELECT id FROM customers ORDER BY substr(ssn, 1, 1) DESC", {("ssn", "order")}),
    ("SELECT ssn FROM customers ORDER BY 1", {("ssn", "order")}),
    ("SELECT upper(ssn) AS x, id FROM customers ORDER BY x", {("ssn", "order")}),
    ("SELECT ssn AS name FROM customers ORDER BY name || ''", {("name", "order")}),
    ("SELECT count(*) FROM customers GROUP BY ssn", {("ssn", "group")}),
    ("SELECT ssn, count(*) FROM customers GROUP BY 1", {("ssn", "group")}),
    (
        "SELECT left(ssn, 3) AS p, count(*) FROM customers GROUP BY p",
        {("ssn", "group"), ("p", "group")},
    ),
    (
        "SELECT count(*) FROM customers GROUP BY ROLLUP (region, ssn)",
        {("region", "group"), ("ssn", "group")},
    ),
    ("SELECT DISTINCT ON (ssn) id FROM customers", {("ssn", "group")}),
    ("SELECT DISTINCT ON (1) ssn, id FROM customers", {("ssn", "group")}),
    ("SELECT DISTINCT ssn FROM customers", set()),  # plain DISTINCT: only what is shown
    (
        "SELECT ssn FROM customers UNION SELECT email FROM users ORDER BY 1",
        {("ssn", "order"), ("email", "order")},
    ),
    (
        "SELECT ssn AS s FROM customers UNION ALL SELECT email FROM users ORDER BY s",
        {("ssn", "order"), ("email", "order")},
    ),
    # windows
    ("SELECT row_number() OVER (ORDER BY ssn) FROM customers", {("ssn", "window")}),
    (
        "SELECT rank() OVER (PARTITION BY region ORDER BY salary) FROM customers",
        {("region", "window"), ("salary", "window")},
    ),
    ("SELECT sum(x) OVER w FROM customers WINDOW w AS (PARTITION BY ssn)", {("ssn", "window")}),
    # aggregates: ordering inside, FILTER
    ("SELECT array_agg(id ORDER BY ssn) FROM customers", {("ssn", "order")}),
    ("SELECT count(*) FILTER (WHERE ssn LIKE '1%') FROM customers", {("ssn", "projection")}),
    ("SELECT count(*) FILTER (WHERE ssn = $1) FROM customers", set()),
    ("SELECT max(id) FROM customers HAVING max(ssn) > '5'", {("ssn", "having")}),
    ("SELECT region FROM customers GROUP BY region HAVING region = 'eu'", {("region", "group")}),
    # CASE in the select list
    ("SELECT CASE WHEN ssn LIKE '1%' THEN 1 END FROM customers", {("ssn", "projection")}),
    ("SELECT CASE WHEN ssn = '1' THEN 1 ELSE 0 END FROM customers", set()),
    (
        "SELECT CASE WHEN ssn = '1' OR email > 'm' THEN 1 END FROM customers",
        {("email", "projection")},
    ),
    ("SELECT CASE ssn WHEN '1' THEN 'a' WHEN $1 THEN 'b' END FROM customers", set()),
    (
        "SELECT CASE ssn WHEN other THEN 'a' END FROM customers",
        {("ssn", "projection"), ("other", "projection")},
    ),
    ("SELECT CASE substr(ssn, 1, 1) WHEN '1' THEN 1 END FROM customers", {("ssn", "projection")}),
    (
        "SELECT CASE WHEN a THEN (CASE WHEN ssn > '5' THEN 1 END) END FROM customers",
        {("ssn", "projection")},
    ),
    ("SELECT ssn, substr(ssn, 1, 3), ssn LIKE '1%' FROM customers", set()),  # shown, so masked
    ("UPDATE t SET x = CASE WHEN ssn > '5' THEN 1 END", {("ssn", "values")}),
    # joins
    (
        "SELECT * FROM customers c JOIN orders o ON o.customer_id = c.id",
        {("customer_id", "join"), ("id", "join")},
    ),
    ("SELECT * FROM customers c JOIN orders o ON o.total > 5 AND c.id = 1", {("total", "join")}),
    ("SELECT * FROM customers JOIN orders USING (ssn)", {("ssn", "join")}),
    ("SELECT * FROM customers NATURAL JOIN orders", {("*", "join")}),
    # subqueries
    (C + "id IN (SELECT customer_id FROM orders)", {("id", "where"), ("customer_id", "where")}),
    (
        C + "id IN (SELECT customer_id FROM orders WHERE total = 5)",
        {("id", "where"), ("customer_id", "where")},
    ),
    (C + "id = (SELECT max(customer_id) FROM orders)", {("id", "where"), ("customer_id", "where")}),
    (
        C + "EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = customers.id)",
        {("customer_id", "where"), ("id", "where")},
    ),
    (C + "EXISTS (SELECT ssn FROM orders WHERE status = 'x')", set()),
    (C + "NOT EXISTS (SELECT 1 FROM orders WHERE note LIKE '%x%')", {("note", "where")}),
    ("SELECT (SELECT max(ssn) FROM customers) FROM t", set()),
    ("SELECT (SELECT ssn FROM customers ORDER BY ssn LIMIT 1)", {("ssn", "order")}),
    (
        "SELECT id FROM t ORDER BY (SELECT ssn FROM customers WHERE customers.id = t.id)",
        {("ssn", "order"), ("id", "where")},
    ),
    ("SELECT * FROM (SELECT ssn FROM customers WHERE ssn > '5') s", {("ssn", "where")}),
    ("SELECT * FROM (SELECT ssn FROM customers) s WHERE s.ssn LIKE '1%'", {("ssn", "where")}),
    (
        "SELECT * FROM customers c, LATERAL (SELECT * FROM orders o WHERE o.total > c.limit) x",
        {("total", "where"), ("limit", "where")},
    ),
    # CTEs
    ("WITH w AS (SELECT * FROM customers WHERE ssn > '5') SELECT * FROM w", {("ssn", "where")}),
    ("WITH w AS (SELECT ssn FROM customers) SELECT * FROM w ORDER BY ssn", {("ssn", "order")}),
    (
        "WITH d AS (DELETE FROM customers WHERE ssn LIKE '1%' RETURNING id) SELECT * FROM d",
        {("ssn", "where")},
    ),
    # DML
    ("UPDATE customers SET x = 1 WHERE ssn LIKE '1%'", {("ssn", "where")}),
    ("UPDATE customers SET x = 1 WHERE id = $1", set()),
    ("DELETE FROM customers WHERE ssn > $1", {("ssn", "where")}),
    (
        "DELETE FROM customers c USING orders o WHERE o.customer_id = c.id",
        {("customer_id", "where"), ("id", "where")},
    ),
    ("INSERT INTO t SELECT id FROM customers WHERE ssn LIKE '1%'", {("ssn", "where")}),
    (
        "INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET x = 1 WHERE t.x > 5",
        {("x", "where")},
    ),
    (
        "MERGE INTO t USING customers c ON t.ssn = c.ssn WHEN MATCHED AND c.salary > 5 THEN DELETE",
        {("ssn", "join"), ("salary", "where")},
    ),
    # nested statements
    ("EXPLAIN SELECT * FROM customers ORDER BY ssn", {("ssn", "order")}),
    ("EXPLAIN ANALYZE SELECT * FROM customers WHERE ssn LIKE '1%'", {("ssn", "where")}),
    ("PREPARE p AS SELECT * FROM customers WHERE ssn < $1", {("ssn", "where")}),
    ("DECLARE c CURSOR FOR SELECT id FROM customers ORDER BY ssn", {("ssn", "order")}),
    ("CREATE TABLE x AS SELECT id FROM customers WHERE ssn > '5'", {("ssn", "where")}),
    ("COPY (SELECT id FROM customers ORDER BY ssn) TO STDOUT", {("ssn", "order")}),
    ("DO $$ BEGIN PERFORM 1 FROM customers WHERE ssn LIKE '1%'; END $$", {("ssn", "where")}),
    # row-level security policies filter rows like a WHERE
    (
        "CREATE POLICY p ON customers USING (ssn LIKE '1%') WITH CHECK (email ~ 'a')",
        {("ssn", "where"), ("email", "where")},
    ),
    ("ALTER POLICY p ON customers USING (length(ssn) > 3)", {("ssn", "where")}),
    ("CREATE POLICY p ON customers USING (tenant = 'acme')", set()),
    # nothing to infer
    ("SELECT ssn, email FROM customers", set()),
    ("SELECT * FROM customers WHERE id = 1 LIMIT 10", set()),
    ("INSERT INTO customers (ssn) VALUES ('1')", set()),
]


@pytest.mark.parametrize(("sql", "expected"), INFERENCE, ids=[case[0] for case in INFERENCE])
def test_inference_columns(sql: str, expected: set[tuple[str, str]]) -> None:
    info = one(sql)
    assert info.parsed, info.error
    assert inference(info) == expected


RESOLVED = [
    (
        "SELECT c.id FROM customers c JOIN orders o ON o.customer_id = c.id WHERE c.ssn > '5'",
        {("customer_id", "join", "orders"), ("id", "join", "customers"),
         ("ssn", "where", "customers")},
    ),
    (
        "SELECT * FROM customers JOIN orders USING (ssn)",
        {("ssn", "join", "customers"), ("ssn", "join", "orders")},
    ),
    (
        "SELECT * FROM s.customers NATURAL JOIN (SELECT 1 AS id) x",
        {("*", "join", "s.customers"), ("*", "join", None)},
    ),
    (
        "SELECT * FROM customers c WHERE EXISTS "
        "(SELECT 1 FROM orders o WHERE o.customer_id = c.id AND o.note ~ 'x')",
        {("customer_id", "where", "orders"), ("id", "where", "customers"),
         ("note", "where", "orders")},
    ),
    (
        "WITH w AS (SELECT ssn FROM customers WHERE email LIKE '%@x') "
        "SELECT * FROM w ORDER BY ssn",
        {("email", "where", "customers"), ("ssn", "order", None)},  # w is no table
    ),
    (
        "SELECT upper(c.ssn) AS k FROM customers c ORDER BY k",
        {("ssn", "order", "customers")},
    ),
    (
        "SELECT region, rank() OVER (PARTITION BY region ORDER BY o.total) "
        "FROM customers c JOIN orders o ON true",
        {("region", "window", None), ("total", "window", "orders")},
    ),
]  # fmt: skip


@pytest.mark.parametrize(("sql", "expected"), RESOLVED, ids=[case[0] for case in RESOLVED])
def test_inference_columns_are_resolved_like_columns(
    sql: str, expected: set[tuple[str, str, str | None]]
) -> None:
    assert resolved(one(sql)) == expected


def test_inference_columns_are_listed_in_inner_statements_too() -> None:
    info = one("EXPLAIN SELECT * FROM customers WHERE ssn LIKE '1%'")
    assert inference(info.inner[0]) == {("ssn", "where")}


def test_columns_keep_their_own_clause() -> None:
    """An entry ordered by position stays a projection column in `columns`."""
    info = one("SELECT ssn FROM customers ORDER BY 1")
    assert columns(info) == {("ssn", "projection", "customers")}
    assert resolved(info) == {("ssn", "order", "customers")}


MOVES = [
    ("CREATE TABLE x AS SELECT ssn FROM customers", True, {("ssn", "projection", "customers")}),
    ("CREATE TABLE x AS TABLE customers", True, {("*", "projection", "customers")}),
    ("CREATE TABLE x AS SELECT ssn FROM customers WITH NO DATA", True,
     {("ssn", "projection", "customers")}),
    ("SELECT ssn INTO x FROM customers", True, {("ssn", "projection", "customers")}),
    ("SELECT ssn INTO x FROM customers UNION SELECT email FROM users", True,
     {("ssn", "projection", "customers"), ("email", "projection", "users")}),
    ("CREATE MATERIALIZED VIEW m AS SELECT c.ssn FROM customers c", True,
     {("ssn", "projection", "customers")}),
    ("REFRESH MATERIALIZED VIEW m", True, set()),
    ("REFRESH MATERIALIZED VIEW CONCURRENTLY m", True, set()),
    ("INSERT INTO x SELECT ssn FROM customers", True,
     {("ssn", "projection", "customers")}),
    ("INSERT INTO x (a) SELECT ssn FROM customers", True,
     {("a", "assignment", "x"), ("ssn", "projection", "customers")}),
    ("INSERT INTO x TABLE customers", True, {("*", "projection", "customers")}),
    ("INSERT INTO x VALUES ((SELECT ssn FROM customers LIMIT 1))", True,
     {("ssn", "projection", "customers")}),
    ("WITH s AS (SELECT ssn FROM customers) INSERT INTO x SELECT * FROM s", True,
     {("ssn", "projection", "customers"), ("*", "projection", None)}),
    ("COPY (SELECT ssn FROM customers) TO '/tmp/x'", True,
     {("ssn", "projection", "customers")}),
    ("COPY (SELECT ssn FROM customers) TO PROGRAM 'gzip > /tmp/x.gz'", True,
     {("ssn", "projection", "customers")}),
    ("COPY customers (ssn) TO '/tmp/x'", True, {("ssn", "projection", "customers")}),
    ("COPY customers TO PROGRAM 'cat'", True, {("*", "projection", "customers")}),
    # the data goes into another statement that moves it: folded like everything else
    ("WITH d AS (INSERT INTO x SELECT ssn FROM customers RETURNING 1) SELECT * FROM d", True,
     {("ssn", "projection", "customers"), ("*", "projection", None)}),
    ("PREPARE p AS INSERT INTO x SELECT ssn FROM customers", True,
     {("ssn", "projection", "customers")}),
    # not moved: the results go to the client, or nothing is read
    ("SELECT ssn FROM customers", False, {("ssn", "projection", "customers")}),
    ("COPY (SELECT ssn FROM customers) TO STDOUT", False, {("ssn", "projection", "customers")}),
    ("COPY customers TO STDOUT", False, {("*", "projection", "customers")}),
    ("COPY customers FROM '/tmp/x'", False, {("*", "assignment", "customers")}),
    ("INSERT INTO x VALUES (1, 'a')", False, set()),
    ("INSERT INTO x DEFAULT VALUES", False, set()),
    ("UPDATE x SET a = c.ssn FROM customers c WHERE c.id = x.id", False,
     {("a", "assignment", "x"), ("ssn", "values", "customers"), ("id", "where", "customers"),
      ("id", "where", "x")}),
    ("CREATE VIEW v AS SELECT ssn FROM customers", False, {("ssn", "projection", "customers")}),
]  # fmt: skip


@pytest.mark.parametrize(("sql", "moves", "read"), MOVES, ids=[case[0] for case in MOVES])
def test_moves_data(sql: str, moves: bool, read: set[tuple[str, str, str | None]]) -> None:
    info = one(sql)
    assert info.parsed, info.error
    assert info.moves_data is moves
    assert columns(info) == read


def test_select_into_in_a_set_operation_creates_a_table() -> None:
    info = one("SELECT ssn INTO x FROM customers UNION SELECT email FROM users")
    assert info.kind == "create_table_as"
    assert {t.qualified for t in info.tables_written} == {"x"}

"""Relations read and written, as PostgreSQL would resolve their names."""

from __future__ import annotations

import pytest

from .helpers import names, one

# (sql, tables read, tables written)
TABLES = [
    ("SELECT * FROM t", {"t"}, set()),
    ("SELECT * FROM s.t", {"s.t"}, set()),
    ("SELECT * FROM db.s.t", {"s.t"}, set()),
    ("SELECT * FROM a JOIN b ON a.id = b.id LEFT JOIN c USING (id)", {"a", "b", "c"}, set()),
    ("SELECT * FROM a, b CROSS JOIN c NATURAL JOIN d", {"a", "b", "c", "d"}, set()),
    ("SELECT * FROM (SELECT * FROM (SELECT * FROM deep) x) y", {"deep"}, set()),
    ("SELECT (SELECT max(v) FROM scalar) FROM t", {"scalar", "t"}, set()),
    ("SELECT * FROM t WHERE EXISTS (SELECT 1 FROM e WHERE e.id = t.id)", {"t", "e"}, set()),
    ("SELECT * FROM t WHERE id IN (SELECT id FROM i)", {"t", "i"}, set()),
    ("SELECT * FROM t WHERE id = ANY (SELECT id FROM a)", {"t", "a"}, set()),
    ("SELECT * FROM t, LATERAL (SELECT * FROM l WHERE l.x = t.x) z", {"t", "l"}, set()),
    (
        "SELECT 1 FROM a UNION SELECT 1 FROM b INTERSECT SELECT 1 FROM c EXCEPT SELECT 1 FROM d",
        {"a", "b", "c", "d"},
        set(),
    ),
    ("(SELECT 1 FROM a) UNION ALL (SELECT 1 FROM b ORDER BY 1) ORDER BY 1", {"a", "b"}, set()),
    ("SELECT f((SELECT x FROM arg))", {"arg"}, set()),
    ("SELECT * FROM generate_series(1, (SELECT n FROM cnt))", {"cnt"}, set()),
    ("SELECT * FROM t TABLESAMPLE SYSTEM (1)", {"t"}, set()),
    ("SELECT * FROM ONLY t", {"t"}, set()),
    ("SELECT ARRAY(SELECT x FROM arr)", {"arr"}, set()),
    (
        "SELECT CASE WHEN true THEN (SELECT 1 FROM c1) ELSE (SELECT 2 FROM c2) END",
        {"c1", "c2"},
        set(),
    ),
    (
        "SELECT * FROM XMLTABLE('/r' PASSING (SELECT doc FROM xml_docs) COLUMNS a int) x",
        {"xml_docs"},
        set(),
    ),
    ("SELECT * FROM t FOR UPDATE OF t", {"t"}, set()),
    # CTEs are not tables; tables inside them are
    ("WITH x AS (SELECT * FROM base) SELECT * FROM x", {"base"}, set()),
    ("WITH x AS (SELECT 1), y AS (SELECT * FROM x) SELECT * FROM y", set(), set()),
    (
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) "
        "SELECT * FROM r",
        set(),
        set(),
    ),
    (
        "WITH RECURSIVE tree AS (SELECT * FROM nodes WHERE parent IS NULL UNION ALL "
        "SELECT n.* FROM nodes n JOIN tree ON n.parent = tree.id) SELECT * FROM tree",
        {"nodes"},
        set(),
    ),
    (
        "WITH x AS (SELECT 1) SELECT * FROM (WITH y AS (SELECT * FROM x) SELECT * FROM y) z",
        set(),
        set(),
    ),
    # a CTE name does not shadow a schema-qualified table, nor itself inside a plain WITH
    ("WITH t AS (SELECT * FROM t) SELECT * FROM t, public.t", {"t", "public.t"}, set()),
    # a CTE is only visible where it is defined
    ("SELECT * FROM (WITH x AS (SELECT 1) SELECT * FROM x) a, x", {"x"}, set()),
    # data-modifying statements
    ("INSERT INTO t VALUES (1)", set(), {"t"}),
    ("INSERT INTO t SELECT * FROM s", {"s"}, {"t"}),
    ("INSERT INTO t VALUES ((SELECT max(id) FROM m))", {"m"}, {"t"}),
    ("INSERT INTO t VALUES (1) RETURNING *", {"t"}, {"t"}),
    ("INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING", {"t"}, {"t"}),
    ("UPDATE t SET a = 1", {"t"}, {"t"}),
    ("UPDATE t SET a = u.a FROM u WHERE u.id = t.id", {"t", "u"}, {"t"}),
    ("UPDATE t SET a = (SELECT a FROM src LIMIT 1)", {"t", "src"}, {"t"}),
    ("DELETE FROM t USING u WHERE u.id = t.id", {"t", "u"}, {"t"}),
    ("DELETE FROM t WHERE id IN (SELECT id FROM gone) RETURNING *", {"t", "gone"}, {"t"}),
    (
        "MERGE INTO tgt USING src ON tgt.id = src.id WHEN MATCHED THEN UPDATE SET v = src.v",
        {"tgt", "src"},
        {"tgt"},
    ),
    (
        "MERGE INTO tgt t USING (SELECT * FROM feed) s ON t.id = s.id WHEN NOT MATCHED THEN "
        "INSERT VALUES (s.id)",
        {"tgt", "feed"},
        {"tgt"},
    ),
    ("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", {"t"}, {"t"}),
    (
        "WITH n AS (INSERT INTO log SELECT * FROM src RETURNING id) SELECT * FROM n",
        {"src", "log"},
        {"log"},
    ),
    ("WITH u AS (UPDATE t SET a = 1 RETURNING *) INSERT INTO h SELECT * FROM u", {"t"}, {"t", "h"}),
    ("WITH src AS (SELECT * FROM raw) INSERT INTO t SELECT * FROM src", {"raw"}, {"t"}),
    ("TRUNCATE a, s.b", set(), {"a", "s.b"}),
    ("SELECT * INTO new_table FROM old_table", {"old_table"}, {"new_table"}),
    ("CREATE TABLE n AS SELECT * FROM o", {"o"}, {"n"}),
    ("CREATE MATERIALIZED VIEW mv AS SELECT * FROM o", {"o"}, {"mv"}),
    ("CREATE VIEW v AS SELECT * FROM o JOIN p USING (id)", {"o", "p"}, {"v"}),
    ("REFRESH MATERIALIZED VIEW mv", set(), {"mv"}),
    # definitions and maintenance
    ("CREATE TABLE s.t (a int REFERENCES o (id), LIKE l) INHERITS (p)", {"o", "l", "p"}, {"s.t"}),
    ("CREATE TABLE c PARTITION OF p FOR VALUES IN (1)", {"p"}, {"c"}),
    ("ALTER TABLE t ADD COLUMN x int", set(), {"t"}),
    ("ALTER TABLE t RENAME TO u", set(), {"t"}),
    ("DROP TABLE a, s.b", set(), {"a", "s.b"}),
    ("DROP VIEW v", set(), {"v"}),
    ("DROP TRIGGER tr ON s.t", set(), {"s.t"}),
    ("DROP SCHEMA s", set(), set()),
    ("CREATE INDEX i ON t (a)", set(), {"t"}),
    ("CREATE TRIGGER tr AFTER INSERT ON t EXECUTE FUNCTION f()", set(), {"t"}),
    ("CREATE POLICY p ON t USING (owner = current_user)", set(), {"t"}),
    (
        "CREATE RULE r AS ON INSERT TO t DO ALSO INSERT INTO log VALUES (new.id)",
        set(),
        {"t", "log"},
    ),
    ("GRANT SELECT ON t, s.u TO bob", set(), {"t", "s.u"}),
    ("COMMENT ON COLUMN s.t.c IS 'x'", set(), {"s.t"}),
    ("COMMENT ON TABLE t IS 'x'", set(), {"t"}),
    ("LOCK TABLE t", {"t"}, set()),
    ("VACUUM FULL t", set(), {"t"}),
    ("ANALYZE t", {"t"}, set()),
    ("CLUSTER t USING i", set(), {"t"}),
    ("CREATE PUBLICATION p FOR TABLE t", {"t"}, set()),
    ("CREATE SCHEMA s CREATE TABLE x (a int)", set(), {"s.x"}),
    ("CREATE SEQUENCE sq", set(), {"sq"}),
    ("COPY t FROM STDIN", set(), {"t"}),
    ("COPY t TO STDOUT", {"t"}, set()),
    ("COPY (SELECT * FROM t JOIN u USING (id)) TO STDOUT", {"t", "u"}, set()),
    ("EXPLAIN SELECT * FROM t", {"t"}, set()),
    ("EXPLAIN ANALYZE DELETE FROM t", {"t"}, {"t"}),
    ("PREPARE s AS UPDATE t SET a = $1", {"t"}, {"t"}),
    ("DECLARE c CURSOR FOR SELECT * FROM t", {"t"}, set()),
    ("CALL p((SELECT x FROM t))", {"t"}, set()),
]


@pytest.mark.parametrize(("sql", "read", "written"), TABLES, ids=[t[0][:60] for t in TABLES])
def test_tables(sql: str, read: set[str], written: set[str]) -> None:
    info = one(sql)
    assert info.error is None
    assert names(info.tables_read) == read
    assert names(info.tables_written) == written


def test_identifiers_fold_like_postgresql() -> None:
    info = one('SELECT * FROM public."Customers", PUBLIC.CUSTOMERS, "MiXed"."Case"')
    assert names(info.tables_read) == {"public.Customers", "public.customers", "MiXed.Case"}


def test_unicode_escaped_identifier_is_decoded() -> None:
    info = one('SELECT * FROM U&"cust\\006Fmers"')
    assert names(info.tables_read) == {"customers"}


def test_same_table_in_two_schemas_is_two_tables() -> None:
    info = one("SELECT * FROM sales.orders JOIN archive.orders USING (id) JOIN orders USING (id)")
    assert [t.qualified for t in info.tables_read] == ["sales.orders", "archive.orders", "orders"]
    assert {(t.schema, t.name) for t in info.tables_read} == {
        ("sales", "orders"),
        ("archive", "orders"),
        (None, "orders"),
    }


def test_modifying_cte_is_flagged_and_listed() -> None:
    info = one("WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d")
    assert info.kind == "select"
    assert info.modifying_cte
    assert [inner.kind for inner in info.inner] == ["delete"]
    assert info.inner[0].has_where is False


def test_read_only_cte_is_not_modifying() -> None:
    assert not one("WITH x AS (SELECT * FROM t) SELECT * FROM x").modifying_cte

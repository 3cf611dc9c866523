"""UPDATE and DELETE: is there a WHERE, and does it filter anything?"""

from __future__ import annotations

import pytest

from .helpers import one

ALWAYS_TRUE = [
    "true",
    "TRUE",
    "NOT false",
    "NOT NOT true",
    "1=1",
    "1 = 1",
    "0 = 0",
    "-1 = -1",
    "1.0 = 1.0",
    "1::int = 1",
    "1 = '1'",
    "'a'='a'",
    "'a' = 'a'::text",
    "2 > 1",
    "1 < 2",
    "2 >= 2",
    "1 <> 2",
    "'t'::boolean",
    "'yes'::bool",
    "1 IS NOT NULL",
    "'x' IS NOT NULL",
    "NULL IS NULL",
    "1 IN (1)",
    "1 IN (3, 2, 1)",
    "1 NOT IN (2)",
    "1 BETWEEN 0 AND 2",
    "true IS TRUE",
    "false IS NOT TRUE",
    "id = id",
    "t.id = t.id",
    "id >= id",
    "lower(name) = lower(name)",
    "id IS NOT DISTINCT FROM id",
    "id IN (1, id)",
    "x OR true",
    "true OR x",
    "x = 1 OR 1 = 1",
    "(x = 1) OR (2 > 1)",
    "true AND 1 = 1",
    "(true)",
    "(SELECT true)",
    "now() > '2000-01-01'",
    "$1",
    "$1 = $1",
    "'a' < 'b'",
    "x = 1 OR $1",
]

FILTERING = [
    "id = 1",
    "id = $1",
    "id IN (1, 2)",
    "name LIKE 'a%'",
    "id = 1 AND true",
    "true AND id = 1",
    "1 = 1 AND id = 2",
    "x IS NOT NULL",
    "id > id",
    "id <> id",
    "false",
    "1 = 2",
    "'a' = 'b'",
    "NOT true",
    "NOT (1 = 1)",
    "NULL",
    "1 IN (2, 3)",
    "2 < 1",
    "EXISTS (SELECT 1 FROM u WHERE u.id = t.id)",
    "CURRENT OF c",
]


@pytest.mark.parametrize("where", ALWAYS_TRUE)
@pytest.mark.parametrize("statement", ["DELETE FROM t WHERE ", "UPDATE t SET a = 1 WHERE "])
def test_always_true_where_is_flagged(statement: str, where: str) -> None:
    info = one(statement + where)
    assert info.has_where is True
    assert info.where_always_true is True


@pytest.mark.parametrize("where", FILTERING)
@pytest.mark.parametrize("statement", ["DELETE FROM t WHERE ", "UPDATE t SET a = 1 WHERE "])
def test_filtering_where_is_not_flagged(statement: str, where: str) -> None:
    info = one(statement + where)
    assert info.has_where is True
    assert info.where_always_true is False


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM t",
        "UPDATE t SET a = 1",
        "UPDATE t SET a = u.a FROM u",
        "DELETE FROM t USING u",
    ],
)
def test_missing_where(sql: str) -> None:
    info = one(sql)
    assert info.has_where is False
    assert info.where_always_true is False


@pytest.mark.parametrize(
    "sql", ["SELECT * FROM t WHERE true", "INSERT INTO t VALUES (1)", "TRUNCATE t", "SET a = 1"]
)
def test_has_where_only_applies_to_update_and_delete(sql: str) -> None:
    assert one(sql).has_where is None


def test_where_facts_of_a_delete_inside_a_cte_are_on_the_inner_statement() -> None:
    info = one("WITH d AS (DELETE FROM t WHERE 1 = 1 RETURNING id) SELECT count(*) FROM d")
    assert info.has_where is None
    (inner,) = info.inner
    assert inner.kind == "delete"
    assert inner.has_where is True
    assert inner.where_always_true is True


def test_where_facts_of_an_explained_or_prepared_delete() -> None:
    for sql in ("EXPLAIN ANALYZE DELETE FROM t", "PREPARE s AS DELETE FROM t WHERE true"):
        (inner,) = one(sql).inner
        assert inner.kind == "delete"
        assert inner.has_where is False or inner.where_always_true

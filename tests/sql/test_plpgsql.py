"""DO blocks and function bodies: what the code inside would run."""

from __future__ import annotations

from .helpers import names, one


def test_do_with_dynamic_execute() -> None:
    info = one("DO $$ BEGIN EXECUTE 'DROP TABLE t'; END $$")
    assert info.kind == "do"
    assert info.dynamic_sql
    assert {"do_block", "dynamic_sql"} <= info.flags
    # the literal is analyzed too, so the drop is visible
    assert [inner.kind for inner in info.inner] == ["drop_table"]
    assert names(info.tables_written) == {"t"}


def test_do_with_computed_execute_is_dynamic() -> None:
    info = one("DO $$ BEGIN EXECUTE format('DROP TABLE %I', 't'); END $$")
    assert info.dynamic_sql
    assert info.inner == ()
    assert "format" in info.functions


def test_do_with_concatenated_literal_execute() -> None:
    info = one("DO $$ BEGIN EXECUTE 'DROP ' || 'TABLE t'; END $$")
    assert [inner.kind for inner in info.inner] == ["drop_table"]


def test_do_with_static_statement() -> None:
    info = one("DO $$ BEGIN DROP TABLE t; END $$")
    assert not info.dynamic_sql
    assert [inner.kind for inner in info.inner] == ["drop_table"]
    assert names(info.tables_written) == {"t"}
    assert info.inner[0].text == "DROP TABLE t"


def test_do_statements_of_every_shape_are_found() -> None:
    info = one(
        """DO $body$
        DECLARE
            r record;
            c CURSOR FOR SELECT * FROM cursor_source;
            n int := (SELECT count(*) FROM default_source);
            rc refcursor;
        BEGIN
            PERFORM pg_read_file('/etc/passwd');
            FOR r IN SELECT * FROM loop_source LOOP
                UPDATE loop_target SET seen = true WHERE id = r.id;
            END LOOP;
            OPEN rc FOR SELECT * FROM open_source;
            IF EXISTS (SELECT 1 FROM condition_source) THEN
                INSERT INTO branch_target VALUES (1);
            END IF;
            n := n + (SELECT max(id) FROM assigned_source);
            RAISE NOTICE '%', (SELECT max(id) FROM raise_source);
            CALL some_procedure();
        END
        $body$"""
    )
    assert not info.dynamic_sql
    assert names(info.tables_read) >= {
        "cursor_source",
        "default_source",
        "loop_source",
        "open_source",
        "condition_source",
        "assigned_source",
        "raise_source",
    }
    assert names(info.tables_written) == {"loop_target", "branch_target"}
    assert {"pg_read_file", "count", "max", "some_procedure"} <= set(info.functions)
    assert "server_file_function" in info.flags
    kinds = [inner.kind for inner in info.inner]
    assert kinds.count("select") >= 4
    assert {"update", "insert", "call"} <= set(kinds)


def test_do_dynamic_forms() -> None:
    for body in (
        "DECLARE r record; BEGIN FOR r IN EXECUTE 'SELECT 1' LOOP END LOOP; END",
        "DECLARE c refcursor; BEGIN OPEN c FOR EXECUTE 'SELECT 1'; END",
        "BEGIN EXECUTE $q$SELECT 1$q$; END",
    ):
        assert one(f"DO $$ {body} $$").dynamic_sql, body


def test_do_in_another_language() -> None:
    info = one("DO LANGUAGE plpython3u $$ import os; os.system('id') $$")
    assert info.dynamic_sql
    assert {"do_block", "do_other_language", "dynamic_sql"} <= info.flags


def test_do_body_that_does_not_parse_fails_closed() -> None:
    info = one("DO $$ BEGIN this is not plpgsql; END $$")
    assert info.dynamic_sql
    assert "unanalyzable_body" in info.flags
    info = one("DO $$ BEGIN SELEC 1; END $$")
    assert info.dynamic_sql
    assert "unanalyzable_body" in info.flags


def test_do_with_nested_do_and_dollar_tags() -> None:
    info = one(
        "DO $outer$ BEGIN EXECUTE "
        "$q$ DO $inner$ BEGIN DROP TABLE deep; END $inner$ $q$; END $outer$"
    )
    assert names(info.tables_written) == {"deep"}
    assert info.inner[0].kind == "do"
    assert info.inner[0].inner[0].kind == "drop_table"


def test_plpgsql_function_body() -> None:
    info = one(
        """CREATE FUNCTION purge(days int) RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $$
        BEGIN
            DELETE FROM events WHERE created < now() - make_interval(days => days);
        END $$"""
    )
    assert info.kind == "create_function"
    assert "security_definer" in info.flags
    assert [inner.kind for inner in info.inner] == ["delete"]
    assert names(info.tables_written) == {"events"}
    assert not info.dynamic_sql


def test_plpgsql_function_with_execute_is_dynamic() -> None:
    info = one(
        "CREATE FUNCTION run(q text) RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE q; END $$"
    )
    assert info.dynamic_sql


def test_plpgsql_procedure_and_set_returning_function() -> None:
    info = one("CREATE PROCEDURE p() LANGUAGE plpgsql AS $$ BEGIN TRUNCATE t; COMMIT; END $$")
    assert [inner.kind for inner in info.inner] == ["truncate"]
    info = one(
        "CREATE FUNCTION f() RETURNS SETOF t LANGUAGE plpgsql AS $$ "
        "BEGIN RETURN QUERY SELECT * FROM t; END $$"
    )
    assert [inner.kind for inner in info.inner] == ["select"]


def test_sql_function_bodies() -> None:
    info = one(
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 FROM a; DELETE FROM b $$"
    )
    assert [inner.kind for inner in info.inner] == ["select", "delete"]
    assert names(info.tables_read) == {"a", "b"}
    assert names(info.tables_written) == {"b"}
    info = one("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC DELETE FROM b; END")
    assert [inner.kind for inner in info.inner] == ["delete"]
    info = one("CREATE FUNCTION f() RETURNS int LANGUAGE sql RETURN (SELECT 1 FROM c)")
    assert names(info.tables_read) == {"c"}


def test_unreadable_function_bodies_fail_closed() -> None:
    info = one("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ not sql $$")
    assert info.dynamic_sql
    assert "unanalyzable_body" in info.flags
    info = one("CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN nope; END $$")
    assert "unanalyzable_body" in info.flags
    info = one("CREATE FUNCTION f() RETURNS int LANGUAGE c AS 'evil.so', 'f'")
    assert info.dynamic_sql
    assert "function_other_language" in info.flags
    info = one("CREATE FUNCTION f() RETURNS int LANGUAGE plperlu AS $$ `id` $$")
    assert "function_other_language" in info.flags

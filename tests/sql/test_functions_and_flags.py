"""Functions called anywhere in a statement, and the flags guardrails look for."""

from __future__ import annotations

import pytest

from bastion.sql import flags as flag_names

from .helpers import one

FUNCTIONS = [
    ("SELECT now()", ("now",)),
    ("SELECT pg_catalog.pg_read_file('x')", ("pg_catalog.pg_read_file",)),
    ('SELECT "Upper"(a) FROM t', ("upper",)),
    ("SELECT count(*) FILTER (WHERE lower(a) = 'x') FROM t", ("count", "lower")),
    ("SELECT string_agg(a, ',' ORDER BY md5(a)) FROM t", ("string_agg", "md5")),
    ("SELECT * FROM generate_series(1, abs(-3))", ("generate_series", "abs")),
    ("SELECT * FROM t WHERE a IN (SELECT upper(b) FROM u)", ("upper",)),
    ("SELECT EXTRACT(year FROM now())", ("extract", "now")),
    ("SELECT substring('abc' FROM 1 FOR 2)", ("substring",)),
    ("INSERT INTO t VALUES (gen_random_uuid())", ("gen_random_uuid",)),
    ("UPDATE t SET a = concat(b, c) RETURNING md5(a)", ("concat", "md5")),
    ("CALL s.p(length('x'))", ("s.p", "length")),
    ("EXECUTE s(pg_read_file('x'))", ("pg_read_file",)),
    ("CREATE INDEX i ON t (lower(a))", ("lower",)),
    # evaluated for existing rows when the column is added
    ("ALTER TABLE t ADD COLUMN c text DEFAULT pg_read_file('/etc/passwd')", ("pg_read_file",)),
    ("SELECT 1", ()),
]


@pytest.mark.parametrize(("sql", "functions"), FUNCTIONS, ids=[f[0][:60] for f in FUNCTIONS])
def test_functions(sql: str, functions: tuple[str, ...]) -> None:
    assert one(sql).functions == functions


FLAGS = [
    ("ALTER TABLE t DROP COLUMN a", {"alter_table_drop_column"}),
    ("ALTER TABLE t ADD COLUMN b int, DROP COLUMN a", {"alter_table_drop_column"}),
    ("ALTER TABLE t DISABLE ROW LEVEL SECURITY", {"disable_row_security"}),
    ("ALTER TABLE t NO FORCE ROW LEVEL SECURITY", {"disable_row_security"}),
    ("ALTER TABLE t DISABLE TRIGGER ALL", {"disable_trigger"}),
    (
        "SET session_replication_role = replica",
        {"disable_trigger", "setting:session_replication_role"},
    ),
    (
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'",
        {"security_definer"},
    ),
    ("CREATE PROCEDURE p() LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'", {"security_definer"}),
    ("ALTER FUNCTION f() SECURITY DEFINER", {"security_definer"}),
    ("ALTER FUNCTION f() SECURITY INVOKER", set()),
    ("CREATE FUNCTION f() RETURNS int LANGUAGE sql SECURITY INVOKER AS 'SELECT 1'", set()),
    ("COPY t TO PROGRAM 'gzip > /tmp/t.gz'", {"copy_program"}),
    ("COPY t FROM '/etc/passwd'", {"copy_server_file"}),
    ("COPY t TO STDOUT", set()),
    ("SELECT pg_read_file('/etc/passwd')", {"server_file_function"}),
    ("SELECT pg_read_binary_file('x')", {"server_file_function"}),
    ("SELECT * FROM pg_ls_dir('.')", {"server_file_function"}),
    ("SELECT pg_stat_file('x')", {"server_file_function"}),
    ("SELECT * FROM pg_ls_logdir()", {"server_file_function"}),
    ("SELECT * FROM pg_ls_waldir()", {"server_file_function"}),
    ("SELECT * FROM pg_ls_tmpdir()", {"server_file_function"}),
    ("SELECT * FROM pg_ls_archive_statusdir()", {"server_file_function"}),
    ("SELECT pg_file_write('x', 'y', false)", {"server_file_function"}),
    ("SELECT public.pg_read_file('x')", {"server_file_function"}),
    ("SELECT lo_import('/etc/passwd')", {"large_object_function"}),
    ("SELECT lo_export(1, '/tmp/x')", {"large_object_function"}),
    ("SELECT lo_from_bytea(0, 'x')", set()),
    ("SELECT * FROM dblink('dbname=x', 'SELECT 1') AS t(a int)", {"dblink", "dynamic_sql"}),
    ("SELECT dblink_exec('DROP TABLE t')", {"dblink", "dynamic_sql"}),
    ("SELECT dblink_connect('c', 'dbname=x')", {"dblink", "dynamic_sql"}),
    ("SELECT query_to_xml('SELECT * FROM secret', true, true, '')", {"dynamic_sql"}),
    ("SELECT table_to_xml('secret', true, true, '')", {"dynamic_sql"}),
    ("CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw", {"foreign_server"}),
    ("ALTER SERVER s OPTIONS (SET host 'evil')", {"foreign_server"}),
    ("DROP SERVER s", {"foreign_server"}),
    ("CREATE USER MAPPING FOR PUBLIC SERVER s OPTIONS (user 'postgres')", {"foreign_server"}),
    ("ALTER USER MAPPING FOR bob SERVER s OPTIONS (SET password 'x')", {"foreign_server"}),
    ("DROP USER MAPPING FOR bob SERVER s", {"foreign_server"}),
    ("CREATE FOREIGN DATA WRAPPER w", {"foreign_server"}),
    ("DROP FOREIGN DATA WRAPPER w", {"foreign_server"}),
    ("IMPORT FOREIGN SCHEMA public FROM SERVER s INTO local", {"foreign_server"}),
    ("CREATE FOREIGN TABLE ft (a int) SERVER s", {"foreign_server"}),
    (
        "ALTER SYSTEM SET shared_preload_libraries = 'x'",
        {"alter_system", "setting:shared_preload_libraries"},
    ),
    ("ALTER SYSTEM RESET ALL", {"alter_system"}),
    ("SET ROLE admin", {"set_role", "setting:role"}),
    ("SET LOCAL ROLE admin", {"set_role", "setting:role"}),
    ("RESET ROLE", {"set_role", "setting:role"}),
    (
        "SET SESSION AUTHORIZATION postgres",
        {"session_authorization", "setting:session_authorization"},
    ),
    (
        "SET SESSION AUTHORIZATION DEFAULT",
        {"session_authorization", "setting:session_authorization"},
    ),
    ("RESET SESSION AUTHORIZATION", {"session_authorization", "setting:session_authorization"}),
    ("SELECT set_config('role', 'admin', false)", {"set_config_role", "set_role", "setting:role"}),
    ("SELECT set_config('ROLE', 'admin', false)", {"set_config_role", "set_role", "setting:role"}),
    (
        "SELECT set_config('role'::text, 'admin', false)",
        {"set_config_role", "set_role", "setting:role"},
    ),
    (
        "SELECT pg_catalog.set_config('session_authorization', 'x', false)",
        {"set_config_role", "session_authorization", "setting:session_authorization"},
    ),
    (
        "SELECT set_config(setting_name => 'role', new_value => 'x', is_local => false)",
        {"set_config_role", "set_role", "setting:role"},
    ),
    ("SELECT set_config(name, 'x', false) FROM t", {"set_config_dynamic"}),
    ("SELECT set_config('rol' || 'e', 'x', false)", {"set_config_dynamic"}),
    ("SELECT set_config('work_mem', '1MB', false)", {"setting:work_mem"}),
    ("SELECT set_config('search_path', 'evil', false)", {"search_path", "setting:search_path"}),
    (
        "SELECT set_config('default_transaction_read_only', 'off', false)",
        {"set_config_read_only", "setting:default_transaction_read_only"},
    ),
    ("UPDATE pg_settings SET setting = 'admin' WHERE name = 'role'", {"set_config_dynamic"}),
    ("LOAD 'plpgsql'", {"load"}),
    ("SET search_path = evil, public", {"search_path", "setting:search_path"}),
    ("SET search_path TO DEFAULT", {"search_path", "setting:search_path"}),
    ("RESET search_path", {"search_path", "setting:search_path"}),
    ("SET SCHEMA 'evil'", {"search_path", "setting:search_path"}),
    ("ALTER ROLE bob SET search_path = evil", {"search_path", "setting:search_path"}),
    ("ALTER ROLE bob SET role = admin", {"set_role", "setting:role"}),
    ("SET work_mem = '1MB'", {"setting:work_mem"}),
    ("RESET ALL", set()),
    ("DISCARD ALL", set()),
    ("BEGIN READ WRITE", {"transaction_begin", "transaction_read_write"}),
    ("BEGIN READ ONLY", {"transaction_begin"}),
    ("SET TRANSACTION READ WRITE", {"transaction_read_write", "setting:transaction_read_only"}),
    (
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
        {"transaction_read_write", "setting:default_transaction_read_only"},
    ),
    ("SET default_transaction_read_only = off", {"setting:default_transaction_read_only"}),
    ("EXPLAIN ANALYZE SELECT 1", {"explain_analyze"}),
    ("EXPLAIN (ANALYZE, BUFFERS) SELECT 1", {"explain_analyze"}),
    ("EXPLAIN (ANALYZE true) SELECT 1", {"explain_analyze"}),
    ("EXPLAIN (ANALYZE off) SELECT 1", set()),
    ("EXPLAIN SELECT 1", set()),
    ("DO $$ BEGIN NULL; END $$", {"do_block"}),
    ("SELECT 1", set()),
    ("SELECT * FROM t WHERE a = $1", set()),
]


@pytest.mark.parametrize(("sql", "expected"), FLAGS, ids=[f[0][:60] for f in FLAGS])
def test_flags(sql: str, expected: set[str]) -> None:
    info = one(sql)
    assert info.error is None
    assert set(info.flags) == expected


def test_dynamic_sql_flag_mirrors_the_field() -> None:
    for sql in ("SELECT dblink_exec('x')", "DO $$ BEGIN EXECUTE 'x'; END $$", "SELECT 1"):
        info = one(sql)
        assert ("dynamic_sql" in info.flags) is info.dynamic_sql


def test_every_flag_produced_is_documented_in_the_flag_list() -> None:
    produced: set[str] = set()
    for _, expected in FLAGS:
        produced |= expected
    undocumented = {
        flag
        for flag in produced
        if flag not in flag_names.ALL_FLAGS and not flag.startswith(flag_names.SETTING_PREFIX)
    }
    assert undocumented == set()


def test_sql_passed_to_dynamic_functions_is_analyzed_when_literal() -> None:
    info = one("SELECT dblink_exec('dbname=app', 'DROP TABLE accounts')")
    assert [inner.kind for inner in info.inner] == ["drop_table"]
    assert {t.name for t in info.tables_written} == {"accounts"}
    info = one("SELECT query_to_xml('SELECT * FROM secret', true, true, '')")
    assert {t.name for t in info.tables_read} == {"secret"}

"""Every statement gets a kind (and an object type for definitions); nothing is guessed."""

from __future__ import annotations

import pytest

from bastion.sql.analyze import analyze

from .helpers import one

KINDS = [
    # data
    ("SELECT 1", "select", None),
    ("VALUES (1), (2)", "select", None),
    ("TABLE t", "select", None),
    ("WITH x AS (SELECT 1) SELECT * FROM x", "select", None),
    ("INSERT INTO t VALUES (1)", "insert", None),
    ("UPDATE t SET a = 1 WHERE id = 2", "update", None),
    ("DELETE FROM t WHERE id = 2", "delete", None),
    ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", "merge", None),
    ("TRUNCATE t", "truncate", None),
    ("COPY t TO STDOUT", "copy", None),
    ("SELECT a INTO b FROM t", "create_table_as", "table"),
    ("CREATE TABLE x AS SELECT * FROM t", "create_table_as", "table"),
    ("CREATE MATERIALIZED VIEW m AS SELECT 1", "create_materialized_view", "materialized_view"),
    ("REFRESH MATERIALIZED VIEW m", "refresh_materialized_view", "materialized_view"),
    # definitions
    ("CREATE TABLE t (a int)", "create_table", "table"),
    ("CREATE TEMP TABLE t (a int)", "create_table", "table"),
    ("ALTER TABLE t ADD COLUMN b int", "alter_table", "table"),
    ("ALTER TABLE t RENAME COLUMN a TO b", "alter_table", "table"),
    ("ALTER TABLE t RENAME TO u", "alter_table", "table"),
    ("ALTER TABLE t SET SCHEMA s", "alter_table", "table"),
    ("ALTER TABLE t OWNER TO bob", "alter_table", "table"),
    ("DROP TABLE t", "drop_table", "table"),
    ("CREATE VIEW v AS SELECT 1", "create_view", "view"),
    ("ALTER VIEW v RENAME TO w", "alter_view", "view"),
    ("ALTER VIEW v OWNER TO bob", "alter_view", "view"),
    ("DROP VIEW v", "drop_view", "view"),
    ("ALTER MATERIALIZED VIEW m SET SCHEMA s", "alter_materialized_view", "materialized_view"),
    ("DROP MATERIALIZED VIEW m", "drop_materialized_view", "materialized_view"),
    ("CREATE INDEX i ON t (a)", "create_index", "index"),
    ("ALTER INDEX i RENAME TO j", "alter_index", "index"),
    ("DROP INDEX i", "drop_index", "index"),
    ("CREATE SEQUENCE s", "create_sequence", "sequence"),
    ("ALTER SEQUENCE s RESTART", "alter_sequence", "sequence"),
    ("DROP SEQUENCE s", "drop_sequence", "sequence"),
    ("CREATE SCHEMA s", "create_schema", "schema"),
    ("ALTER SCHEMA s RENAME TO r", "alter_schema", "schema"),
    ("DROP SCHEMA s CASCADE", "drop_schema", "schema"),
    ("CREATE DATABASE d", "create_database", "database"),
    ("ALTER DATABASE d SET work_mem = '1MB'", "alter_database", "database"),
    ("ALTER DATABASE d RENAME TO e", "alter_database", "database"),
    ("DROP DATABASE d", "drop_database", "database"),
    ("CREATE ROLE r", "create_role", "role"),
    ("CREATE USER u", "create_role", "role"),
    ("CREATE GROUP g", "create_role", "role"),
    ("ALTER ROLE r SUPERUSER", "alter_role", "role"),
    ("ALTER USER u SET search_path = x", "alter_role", "role"),
    ("ALTER ROLE r RENAME TO s", "alter_role", "role"),
    ("DROP ROLE r", "drop_role", "role"),
    ("DROP USER u", "drop_role", "role"),
    ("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'", "create_function", "function"),
    ("CREATE PROCEDURE p() LANGUAGE sql AS 'SELECT 1'", "create_procedure", "procedure"),
    ("ALTER FUNCTION f() STABLE", "alter_function", "function"),
    ("ALTER PROCEDURE p() RENAME TO q", "alter_procedure", "procedure"),
    ("DROP FUNCTION f()", "drop_function", "function"),
    ("DROP PROCEDURE p()", "drop_procedure", "procedure"),
    ("DROP ROUTINE r()", "drop_routine", "routine"),
    ("CREATE TRIGGER tr AFTER INSERT ON t EXECUTE FUNCTION f()", "create_trigger", "trigger"),
    ("ALTER TRIGGER tr ON t RENAME TO tr2", "alter_trigger", "trigger"),
    ("DROP TRIGGER tr ON t", "drop_trigger", "trigger"),
    ("CREATE EXTENSION hstore", "create_extension", "extension"),
    ("ALTER EXTENSION hstore UPDATE", "alter_extension", "extension"),
    ("DROP EXTENSION hstore", "drop_extension", "extension"),
    ("CREATE SERVER s FOREIGN DATA WRAPPER w", "create_foreign_server", "foreign_server"),
    ("ALTER SERVER s OPTIONS (host 'x')", "alter_foreign_server", "foreign_server"),
    ("DROP SERVER s", "drop_foreign_server", "foreign_server"),
    ("CREATE USER MAPPING FOR bob SERVER s", "create_user_mapping", "user_mapping"),
    (
        "ALTER USER MAPPING FOR bob SERVER s OPTIONS (user 'x')",
        "alter_user_mapping",
        "user_mapping",
    ),
    ("DROP USER MAPPING FOR bob SERVER s", "drop_user_mapping", "user_mapping"),
    ("CREATE FOREIGN DATA WRAPPER w", "create_foreign_data_wrapper", "foreign_data_wrapper"),
    (
        "ALTER FOREIGN DATA WRAPPER w OPTIONS (x 'y')",
        "alter_foreign_data_wrapper",
        "foreign_data_wrapper",
    ),
    ("DROP FOREIGN DATA WRAPPER w", "drop_foreign_data_wrapper", "foreign_data_wrapper"),
    ("CREATE FOREIGN TABLE ft (a int) SERVER s", "create_foreign_table", "foreign_table"),
    ("ALTER FOREIGN TABLE ft ADD COLUMN b int", "alter_foreign_table", "foreign_table"),
    ("DROP FOREIGN TABLE ft", "drop_foreign_table", "foreign_table"),
    ("IMPORT FOREIGN SCHEMA r FROM SERVER s INTO l", "import_foreign_schema", "foreign_table"),
    ("CREATE TYPE ty AS (a int)", "create_type", "type"),
    ("CREATE TYPE mood AS ENUM ('ok')", "create_type", "type"),
    ("CREATE TYPE rng AS RANGE (subtype = int)", "create_type", "type"),
    ("ALTER TYPE mood ADD VALUE 'bad'", "alter_type", "type"),
    ("ALTER TYPE ty ADD ATTRIBUTE b int", "alter_type", "type"),
    ("DROP TYPE ty", "drop_type", "type"),
    ("CREATE DOMAIN d AS int CHECK (VALUE > 0)", "create_domain", "domain"),
    ("ALTER DOMAIN d SET DEFAULT 1", "alter_domain", "domain"),
    ("CREATE POLICY p ON t USING (true)", "create_policy", "policy"),
    ("ALTER POLICY p ON t USING (false)", "alter_policy", "policy"),
    ("DROP POLICY p ON t", "drop_policy", "policy"),
    ("CREATE PUBLICATION p FOR TABLE t", "create_publication", "publication"),
    ("ALTER PUBLICATION p ADD TABLE u", "alter_publication", "publication"),
    ("DROP PUBLICATION p", "drop_publication", "publication"),
    ("CREATE SUBSCRIPTION s CONNECTION 'x' PUBLICATION p", "create_subscription", "subscription"),
    ("ALTER SUBSCRIPTION s DISABLE", "alter_subscription", "subscription"),
    ("DROP SUBSCRIPTION s", "drop_subscription", "subscription"),
    (
        "CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION f()",
        "create_event_trigger",
        "event_trigger",
    ),
    ("ALTER EVENT TRIGGER e DISABLE", "alter_event_trigger", "event_trigger"),
    ("DROP EVENT TRIGGER e", "drop_event_trigger", "event_trigger"),
    ("CREATE RULE r AS ON INSERT TO t DO NOTHING", "create_rule", "rule"),
    ("DROP RULE r ON t", "drop_rule", "rule"),
    ("CREATE TABLESPACE ts LOCATION '/x'", "create_tablespace", "tablespace"),
    ("DROP TABLESPACE ts", "drop_tablespace", "tablespace"),
    ("CREATE AGGREGATE a (int) (sfunc = f, stype = int)", "create_aggregate", "aggregate"),
    (
        "CREATE OPERATOR === (leftarg = int, rightarg = int, function = f)",
        "create_operator",
        "operator",
    ),
    ("CREATE CAST (int AS text) WITH FUNCTION f(int)", "create_cast", "cast"),
    ("CREATE STATISTICS st ON a, b FROM t", "create_statistics", "statistics"),
    ("CREATE COLLATION c (locale = 'x')", "create_collation", "collation"),
    ("CREATE ACCESS METHOD am TYPE TABLE HANDLER h", "create_access_method", "access_method"),
    (
        "CREATE TEXT SEARCH CONFIGURATION c (PARSER = p)",
        "create_text_search_configuration",
        "text_search_configuration",
    ),
    (
        "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO bob",
        "alter_default_privileges",
        "default_privileges",
    ),
    ("COMMENT ON TABLE t IS 'x'", "comment", "table"),
    ("COMMENT ON FUNCTION f() IS 'x'", "comment", "function"),
    ("SECURITY LABEL ON TABLE t IS 'x'", "security_label", "table"),
    # privileges
    ("GRANT SELECT ON t TO bob", "grant", "table"),
    ("REVOKE SELECT ON t FROM bob", "revoke", "table"),
    ("GRANT USAGE ON SCHEMA s TO bob", "grant", "schema"),
    ("GRANT admin TO bob", "grant_role", "role"),
    ("REVOKE admin FROM bob", "revoke_role", "role"),
    ("REASSIGN OWNED BY a TO b", "reassign_owned", None),
    ("DROP OWNED BY a", "drop_owned", None),
    # session
    ("SET work_mem = '1MB'", "set", None),
    ("SET LOCAL statement_timeout = 0", "set", None),
    ("SET TIME ZONE 'UTC'", "set", None),
    ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", "set", None),
    ("RESET work_mem", "reset", None),
    ("RESET ALL", "reset", None),
    ("SET ROLE admin", "set_role", None),
    ("SET ROLE NONE", "set_role", None),
    ("RESET ROLE", "set_role", None),
    ("SET SESSION AUTHORIZATION bob", "set_session_authorization", None),
    ("RESET SESSION AUTHORIZATION", "set_session_authorization", None),
    ("SHOW search_path", "show", None),
    ("SHOW ALL", "show", None),
    ("SET CONSTRAINTS ALL DEFERRED", "set_constraints", None),
    ("DISCARD ALL", "discard", None),
    # transactions
    ("BEGIN", "transaction", None),
    ("START TRANSACTION", "transaction", None),
    ("COMMIT", "transaction", None),
    ("END", "transaction", None),
    ("ROLLBACK", "transaction", None),
    ("SAVEPOINT a", "transaction", None),
    ("RELEASE SAVEPOINT a", "transaction", None),
    ("ROLLBACK TO SAVEPOINT a", "transaction", None),
    ("PREPARE TRANSACTION 'x'", "transaction", None),
    ("COMMIT PREPARED 'x'", "transaction", None),
    ("ROLLBACK PREPARED 'x'", "transaction", None),
    # code, wrappers, cursors
    ("DO $$ BEGIN NULL; END $$", "do", None),
    ("CALL p()", "call", None),
    ("EXPLAIN SELECT 1", "explain", None),
    ("PREPARE s AS SELECT 1", "prepare", None),
    ("EXECUTE s", "execute", None),
    ("DEALLOCATE s", "deallocate", None),
    ("DEALLOCATE ALL", "deallocate", None),
    ("DECLARE c CURSOR FOR SELECT 1", "declare", None),
    ("FETCH 10 FROM c", "fetch", None),
    ("MOVE c", "move", None),
    ("CLOSE c", "close", None),
    ("LISTEN ch", "listen", None),
    ("UNLISTEN *", "unlisten", None),
    ("NOTIFY ch, 'x'", "notify", None),
    # maintenance and server
    ("VACUUM t", "vacuum", None),
    ("VACUUM (FULL, ANALYZE) t", "vacuum", None),
    ("ANALYZE t", "analyze", None),
    ("CLUSTER t USING i", "cluster", None),
    ("REINDEX TABLE t", "reindex", None),
    ("CHECKPOINT", "checkpoint", None),
    ("LOCK TABLE t", "lock", None),
    ("LOAD 'auto_explain'", "load", None),
    ("ALTER SYSTEM SET work_mem = '1MB'", "alter_system", None),
]


@pytest.mark.parametrize(("sql", "kind", "object_type"), KINDS, ids=[k[0] for k in KINDS])
def test_kind(sql: str, kind: str, object_type: str | None) -> None:
    info = one(sql)
    assert info.error is None
    assert (info.kind, info.object_type) == (kind, object_type)
    assert "unclassified" not in info.flags


TRANSACTIONS = [
    ("BEGIN", "transaction_begin"),
    ("START TRANSACTION READ ONLY", "transaction_begin"),
    ("COMMIT", "transaction_commit"),
    ("END", "transaction_commit"),
    ("ROLLBACK", "transaction_rollback"),
    ("ABORT", "transaction_rollback"),
    ("SAVEPOINT a", "transaction_savepoint"),
    ("RELEASE a", "transaction_release"),
    ("ROLLBACK TO a", "transaction_rollback_to"),
    ("PREPARE TRANSACTION 'x'", "transaction_prepare"),
    ("COMMIT PREPARED 'x'", "transaction_commit_prepared"),
    ("ROLLBACK PREPARED 'x'", "transaction_rollback_prepared"),
]


@pytest.mark.parametrize(("sql", "flag"), TRANSACTIONS)
def test_transaction_flags(sql: str, flag: str) -> None:
    info = one(sql)
    assert info.kind == "transaction"
    assert [f for f in info.flags if f.startswith("transaction_")] == [flag]


def test_unparsable_input_is_one_unknown_statement() -> None:
    infos = analyze("SELECT 1; DROP TABLE t; SELEC oops")
    assert len(infos) == 1
    assert infos[0].kind == "unknown"
    assert infos[0].error and "syntax error" in infos[0].error
    assert not infos[0].parsed


def test_empty_input_has_no_statements() -> None:
    assert analyze("") == ()
    assert analyze(" ;; -- nothing\n") == ()


def test_nul_character_is_refused() -> None:
    # The parser stops at NUL, so it would not see what follows: fail closed.
    (info,) = analyze("SELECT 1\x00; DROP TABLE t")
    assert info.kind == "unknown"


def test_unknown_statement_type_is_unclassified(monkeypatch: pytest.MonkeyPatch) -> None:
    from bastion.sql import analyze as analyze_module
    from bastion.sql import kinds

    monkeypatch.delitem(kinds.FIXED_KINDS, "CheckPointStmt")
    analyze_module.clear_cache()
    try:
        info = one("CHECKPOINT")
        assert info.kind == "other"
        assert "unclassified" in info.flags
    finally:
        analyze_module.clear_cache()

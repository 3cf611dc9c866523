"""The flags a StatementInfo can carry: facts guardrails look for.

Each constant is documented in docs/statements.md. Flags only ever add information: a flag that
is absent means Bastion saw no evidence of the fact, never that it proved its absence.
"""

from __future__ import annotations

ALTER_SYSTEM = "alter_system"
ALTER_TABLE_DROP_COLUMN = "alter_table_drop_column"
COPY_PROGRAM = "copy_program"
COPY_SERVER_FILE = "copy_server_file"
DBLINK = "dblink"
DISABLE_ROW_SECURITY = "disable_row_security"
DISABLE_TRIGGER = "disable_trigger"
DO_BLOCK = "do_block"
DO_OTHER_LANGUAGE = "do_other_language"
DYNAMIC_SQL = "dynamic_sql"
EXPLAIN_ANALYZE = "explain_analyze"
FOREIGN_SERVER = "foreign_server"
FUNCTION_OTHER_LANGUAGE = "function_other_language"
LARGE_OBJECT_FUNCTION = "large_object_function"
LOAD = "load"
SEARCH_PATH = "search_path"
SECURITY_DEFINER = "security_definer"
SERVER_FILE_FUNCTION = "server_file_function"
SESSION_AUTHORIZATION = "session_authorization"
SET_CONFIG_DYNAMIC = "set_config_dynamic"
SET_CONFIG_ROLE = "set_config_role"
SET_ROLE = "set_role"
UNANALYZABLE_BODY = "unanalyzable_body"
UNCLASSIFIED = "unclassified"
SET_CONFIG_READ_ONLY = "set_config_read_only"
TRANSACTION_READ_WRITE = "transaction_read_write"

# `setting:<name>`: the statement changes run-time setting <name> (SET, RESET, set_config(),
# SET TRANSACTION, ALTER ROLE / DATABASE / SYSTEM ... SET). Names are lower-case.
SETTING_PREFIX = "setting:"

TRANSACTION_PREFIX = "transaction_"
TRANSACTION_BEGIN = "transaction_begin"
TRANSACTION_COMMIT = "transaction_commit"
TRANSACTION_ROLLBACK = "transaction_rollback"
TRANSACTION_SAVEPOINT = "transaction_savepoint"
TRANSACTION_RELEASE = "transaction_release"
TRANSACTION_ROLLBACK_TO = "transaction_rollback_to"
TRANSACTION_PREPARE = "transaction_prepare"
TRANSACTION_COMMIT_PREPARED = "transaction_commit_prepared"
TRANSACTION_ROLLBACK_PREPARED = "transaction_rollback_prepared"

ALL_FLAGS = frozenset(
    {
        ALTER_SYSTEM,
        ALTER_TABLE_DROP_COLUMN,
        COPY_PROGRAM,
        COPY_SERVER_FILE,
        DBLINK,
        DISABLE_ROW_SECURITY,
        DISABLE_TRIGGER,
        DO_BLOCK,
        DO_OTHER_LANGUAGE,
        DYNAMIC_SQL,
        EXPLAIN_ANALYZE,
        FOREIGN_SERVER,
        FUNCTION_OTHER_LANGUAGE,
        LARGE_OBJECT_FUNCTION,
        LOAD,
        SEARCH_PATH,
        SECURITY_DEFINER,
        SERVER_FILE_FUNCTION,
        SESSION_AUTHORIZATION,
        SET_CONFIG_DYNAMIC,
        SET_CONFIG_ROLE,
        SET_ROLE,
        UNANALYZABLE_BODY,
        UNCLASSIFIED,
        SET_CONFIG_READ_ONLY,
        TRANSACTION_READ_WRITE,
        TRANSACTION_BEGIN,
        TRANSACTION_COMMIT,
        TRANSACTION_ROLLBACK,
        TRANSACTION_SAVEPOINT,
        TRANSACTION_RELEASE,
        TRANSACTION_ROLLBACK_TO,
        TRANSACTION_PREPARE,
        TRANSACTION_COMMIT_PREPARED,
        TRANSACTION_ROLLBACK_PREPARED,
    }
)

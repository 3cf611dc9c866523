"""The built-in guardrail pack: statements that are dangerous whoever sends them.

Each guardrail has an id, a default effect, a reason and a hint for the client, and a
predicate over one analyzed statement (inner statements are checked on their own by the
engine). They are registered in order with `register_guardrail`; policy files switch them and
change their effect through `guardrails.overrides`. Predicates read only what the analyzer
reports (kind, flags, WHERE facts, function names) and err towards matching: a fact the
analyzer could not establish, such as an UPDATE's WHERE clause, counts as the dangerous case.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from bastion.sql.statement import StatementInfo

GuardrailEffect = Literal["deny", "require_approval"]


@dataclass(frozen=True, slots=True)
class Guardrail:
    id: str
    summary: str  # one line for docs and explain
    reason: str
    hint: str
    applies: Callable[[StatementInfo], bool]
    default_effect: GuardrailEffect = "deny"


GUARDRAILS: dict[str, Guardrail] = {}


def register_guardrail(guardrail: Guardrail) -> Guardrail:
    if guardrail.id in GUARDRAILS:
        raise ValueError(f"guardrail {guardrail.id!r} is registered twice")
    GUARDRAILS[guardrail.id] = guardrail
    return guardrail


def _kinds(*kinds: str) -> Callable[[StatementInfo], bool]:
    wanted = frozenset(kinds)
    return lambda statement: statement.kind in wanted


def _flags(*flags: str) -> Callable[[StatementInfo], bool]:
    wanted = frozenset(flags)
    return lambda statement: not wanted.isdisjoint(statement.flags)


def _calls(names: Iterable[str], prefixes: tuple[str, ...] = ()) -> Callable[[StatementInfo], bool]:
    """Calls to any of `names` (or names starting with `prefixes`), in any schema."""
    wanted = frozenset(names)

    def applies(statement: StatementInfo) -> bool:
        for function in statement.functions:
            bare = function.rsplit(".", 1)[-1]
            if bare in wanted or (prefixes and bare.startswith(prefixes)):
                return True
        return False

    return applies


def _any(*predicates: Callable[[StatementInfo], bool]) -> Callable[[StatementInfo], bool]:
    return lambda statement: any(predicate(statement) for predicate in predicates)


def _without_where(kind: str) -> Callable[[StatementInfo], bool]:
    # has_where None (not reported) counts as missing: fail closed.
    return lambda statement: (
        statement.kind == kind and (statement.has_where is not True or statement.where_always_true)
    )


def _copy_to(target: str, flag: str) -> Callable[[StatementInfo], bool]:
    def applies(statement: StatementInfo) -> bool:
        if flag in statement.flags:
            return True
        return statement.copy is not None and statement.copy.target == target

    return applies


# Functions that read, list or write files on the database server (core and adminpack).
SERVER_FILE_FUNCTIONS = frozenset(
    {
        "pg_read_file",
        "pg_read_binary_file",
        "pg_ls_dir",
        "pg_stat_file",
        "pg_ls_logdir",
        "pg_ls_waldir",
        "pg_ls_tmpdir",
        "pg_ls_archive_statusdir",
        "pg_ls_logicalsnapdir",
        "pg_ls_logicalmapdir",
        "pg_ls_replslotdir",
        "pg_file_write",
        "pg_file_rename",
        "pg_file_unlink",
        "pg_file_sync",
        "pg_logdir_ls",
    }
)
LARGE_OBJECT_FILE_FUNCTIONS = frozenset({"lo_import", "lo_export"})

_DROP_HINT = "Ask a database administrator, or use a non-production target."

register_guardrail(
    Guardrail(
        "drop_table",
        "DROP TABLE",
        "dropping tables is blocked on this target",
        _DROP_HINT,
        _kinds("drop_table"),
    )
)
register_guardrail(
    Guardrail(
        "drop_schema",
        "DROP SCHEMA",
        "dropping schemas is blocked on this target",
        _DROP_HINT,
        _kinds("drop_schema"),
    )
)
register_guardrail(
    Guardrail(
        "drop_database",
        "DROP DATABASE",
        "dropping databases is blocked on this target",
        _DROP_HINT,
        _kinds("drop_database"),
    )
)
register_guardrail(
    Guardrail(
        "truncate",
        "TRUNCATE",
        "TRUNCATE is blocked on this target",
        "Delete the rows you mean with DELETE ... WHERE, or ask a database administrator.",
        _kinds("truncate"),
    )
)
register_guardrail(
    Guardrail(
        "update_without_where",
        "UPDATE without a WHERE clause, or with one that is always true",
        "UPDATE without a WHERE clause (or with one that is always true) would change every row",
        "Add a WHERE clause that selects the rows to change.",
        _without_where("update"),
    )
)
register_guardrail(
    Guardrail(
        "delete_without_where",
        "DELETE without a WHERE clause, or with one that is always true",
        "DELETE without a WHERE clause (or with one that is always true) would remove every row",
        "Add a WHERE clause that selects the rows to delete.",
        _without_where("delete"),
    )
)
register_guardrail(
    Guardrail(
        "alter_table_drop_column",
        "ALTER TABLE ... DROP COLUMN",
        "dropping columns is blocked on this target",
        _DROP_HINT,
        _flags("alter_table_drop_column"),
    )
)
register_guardrail(
    Guardrail(
        "role_management",
        "GRANT, REVOKE, CREATE/ALTER/DROP ROLE, default privileges, REASSIGN/DROP OWNED",
        "changing roles and privileges is blocked on this target",
        "Privileges are managed by database administrators outside Bastion.",
        _kinds(
            "grant",
            "revoke",
            "grant_role",
            "revoke_role",
            "create_role",
            "alter_role",
            "drop_role",
            "alter_default_privileges",
            "reassign_owned",
            "drop_owned",
        ),
    )
)
register_guardrail(
    Guardrail(
        "copy_program",
        "COPY ... TO/FROM PROGRAM",
        "COPY with PROGRAM runs a command on the database server and is blocked",
        "Use COPY ... TO STDOUT or FROM STDIN (psql's \\copy) instead.",
        _copy_to("program", "copy_program"),
    )
)
register_guardrail(
    Guardrail(
        "copy_server_file",
        "COPY ... TO/FROM a file on the database server",
        "COPY to or from a file on the database server is blocked",
        "Use COPY ... TO STDOUT or FROM STDIN (psql's \\copy) instead.",
        _copy_to("file", "copy_server_file"),
    )
)
register_guardrail(
    Guardrail(
        "server_file_functions",
        "pg_read_file, pg_ls_dir and other server file functions",
        "functions that read or list files on the database server are blocked",
        "Ask a database administrator for the data you need.",
        _any(_flags("server_file_function"), _calls(SERVER_FILE_FUNCTIONS)),
    )
)
register_guardrail(
    Guardrail(
        "large_objects",
        "large object functions such as lo_import and lo_export",
        "large object functions that reach server files are blocked",
        "Store the data in a table column instead.",
        _any(_flags("large_object_function"), _calls(LARGE_OBJECT_FILE_FUNCTIONS)),
    )
)
register_guardrail(
    Guardrail(
        "dblink_and_foreign_servers",
        "dblink, foreign servers, user mappings and foreign tables",
        "connections from the database server to other servers are blocked",
        "Connect to the other database through Bastion instead.",
        _any(
            _flags("dblink", "foreign_server"),
            _calls((), prefixes=("dblink",)),
            _kinds(
                "create_foreign_server",
                "alter_foreign_server",
                "create_user_mapping",
                "alter_user_mapping",
                "import_foreign_schema",
                "create_foreign_table",
                "create_foreign_data_wrapper",
                "alter_foreign_data_wrapper",
            ),
        ),
    )
)
register_guardrail(
    Guardrail(
        "alter_system",
        "ALTER SYSTEM",
        "ALTER SYSTEM changes the server's configuration and is blocked",
        "Server settings are managed by database administrators outside Bastion.",
        _any(_kinds("alter_system"), _flags("alter_system")),
    )
)
register_guardrail(
    Guardrail(
        "set_role",
        "SET ROLE, SET SESSION AUTHORIZATION, set_config('role', ...)",
        "changing the database role of the session is blocked",
        "Bastion chooses the database role for you; connect with the identity you need.",
        _any(
            _kinds("set_role", "set_session_authorization"),
            _flags(
                "set_role",
                "session_authorization",
                "set_config_role",
                # set_config() with a computed setting name could be setting the role.
                "set_config_dynamic",
                "setting:role",
                "setting:session_authorization",
            ),
        ),
    )
)
register_guardrail(
    Guardrail(
        "security_definer",
        "functions created with SECURITY DEFINER",
        "SECURITY DEFINER functions run with their owner's privileges and are blocked",
        "Create the function with SECURITY INVOKER (the default).",
        _flags("security_definer"),
    )
)
register_guardrail(
    Guardrail(
        "load",
        "LOAD of a shared library",
        "LOAD loads code into the database server and is blocked",
        "Libraries are installed by database administrators outside Bastion.",
        _any(_kinds("load"), _flags("load")),
    )
)
register_guardrail(
    Guardrail(
        "function_call",
        "fast-path FunctionCall messages, which name a function by OID",
        "fast-path function calls name their function by number, so Bastion cannot tell which "
        "function would run",
        "Call the function in a SQL statement (SELECT f(...)) so it can be checked.",
        _kinds("function_call"),
    )
)
register_guardrail(
    Guardrail(
        "dynamic_sql",
        "DO blocks and dynamic SQL whose statements cannot be checked in advance",
        "DO blocks and dynamic SQL run statements Bastion cannot check in advance",
        "Send the statements themselves, or wait for an approver.",
        _any(
            _kinds("do"),
            _flags(
                "dynamic_sql",
                "do_block",
                "unanalyzable_body",
                "do_other_language",
                "function_other_language",
            ),
            lambda statement: statement.dynamic_sql,
        ),
        default_effect="require_approval",
    )
)

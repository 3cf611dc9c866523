"""Function calls: their names as reported, and the flags some of them raise.

Names are matched on their last part, whatever schema the call names, so that a look-alike in
another schema is flagged too (a false alarm is cheaper than a missed server-side escape).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bastion.sql import flags
from bastion.sql.walker import Node, body_of, string_constant, strings

# Functions that read, list or write files on the database server.
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
        "pg_ls_summariesdir",
        # adminpack (older servers)
        "pg_file_write",
        "pg_file_read",
        "pg_file_rename",
        "pg_file_unlink",
        "pg_file_sync",
        "pg_file_length",
        "pg_logdir_ls",
    }
)

# Large-object functions that move data between a large object and a server file.
LARGE_OBJECT_FILE_FUNCTIONS = frozenset({"lo_import", "lo_export"})

# Functions that run SQL given to them as text, so the statement they run is not in the tree.
SQL_TEXT_FUNCTIONS = frozenset(
    {"query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema", "ts_stat"}
)

# Functions that read whole relations, schemas or databases named by a value.
RELATION_BY_NAME_FUNCTIONS = frozenset(
    {
        "table_to_xml",
        "table_to_xmlschema",
        "table_to_xml_and_xmlschema",
        "schema_to_xml",
        "schema_to_xmlschema",
        "schema_to_xml_and_xmlschema",
        "database_to_xml",
        "database_to_xmlschema",
        "database_to_xml_and_xmlschema",
    }
)

# Settings whose change through set_config() deserves a flag of its own.
_SETTING_FLAGS: dict[str, tuple[str, ...]] = {
    "role": (flags.SET_ROLE,),
    "session_authorization": (flags.SESSION_AUTHORIZATION,),
    "search_path": (flags.SEARCH_PATH,),
    "session_replication_role": (flags.DISABLE_TRIGGER,),
}


@dataclass(slots=True)
class CallFacts:
    """What one call tells the analyzer beyond its name."""

    flags: set[str] = field(default_factory=set)
    dynamic_sql: bool = False
    sql_literals: list[str] = field(default_factory=list)  # SQL text passed as a literal


def function_name(call: Node) -> tuple[str, str]:
    """(name as reported, lower-case last part) of a FuncCall body."""
    parts = [part.lower() for part in strings(call.get("funcname"))]
    if call.get("funcformat") == "COERCE_SQL_SYNTAX" and len(parts) == 2:
        # EXTRACT(...), SUBSTRING(... FROM ...): the grammar adds pg_catalog, the user did not.
        parts = parts[1:]
    return ".".join(parts), parts[-1] if parts else ""


_READ_ONLY_SETTINGS = frozenset({"default_transaction_read_only", "transaction_read_only"})


def setting_flags(setting: str) -> tuple[str, ...]:
    """Flags for changing a run-time setting (`SET name`, `set_config('name', ...)`)."""
    name = setting.lower()
    return (flags.SETTING_PREFIX + name, *_SETTING_FLAGS.get(name, ()))


def call_facts(base: str, args: list[object]) -> CallFacts | None:
    """Flags and dynamic SQL for a call of `base` (lower-case, unqualified); None if nothing."""
    if base in SERVER_FILE_FUNCTIONS:
        return CallFacts(flags={flags.SERVER_FILE_FUNCTION})
    if base in LARGE_OBJECT_FILE_FUNCTIONS:
        return CallFacts(flags={flags.LARGE_OBJECT_FUNCTION})
    if base == "set_config":
        return _set_config(args)
    if base.startswith("dblink"):
        return CallFacts(
            flags={flags.DBLINK, flags.DYNAMIC_SQL}, dynamic_sql=True, sql_literals=_literals(args)
        )
    if base in SQL_TEXT_FUNCTIONS:
        return CallFacts(flags={flags.DYNAMIC_SQL}, dynamic_sql=True, sql_literals=_literals(args))
    if base in RELATION_BY_NAME_FUNCTIONS:
        return CallFacts(flags={flags.DYNAMIC_SQL}, dynamic_sql=True)
    return None


def _set_config(args: list[object]) -> CallFacts:
    setting_arg: object = args[0] if args else None
    for arg in args:
        named = body_of(arg, "NamedArgExpr")
        if named is not None and named.get("name") == "setting_name":
            setting_arg = named.get("arg")
            break
    else:
        named = body_of(setting_arg, "NamedArgExpr")
        if named is not None:
            setting_arg = None  # some other named argument first: the name is not literal here
    setting = string_constant(setting_arg)
    if setting is None:
        return CallFacts(flags={flags.SET_CONFIG_DYNAMIC})
    found = set(setting_flags(setting))
    if setting.lower() in ("role", "session_authorization"):
        found.add(flags.SET_CONFIG_ROLE)
    if setting.lower() in _READ_ONLY_SETTINGS:
        found.add(flags.SET_CONFIG_READ_ONLY)
    return CallFacts(flags=found)


def _literals(args: list[object]) -> list[str]:
    out: list[str] = []
    for arg in args:
        named = body_of(arg, "NamedArgExpr")
        text = string_constant(named.get("arg") if named is not None else arg)
        if text:
            out.append(text)
    return out

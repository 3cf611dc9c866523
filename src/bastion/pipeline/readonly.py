"""Whether a statement may change data: the analysis half of read-only enforcement.

The other half is the upstream session itself, opened with default_transaction_read_only.
This half refuses what analysis can see before it reaches the server, and anything it cannot
see through (dynamic SQL) is treated as a write.
"""

from __future__ import annotations

from bastion.sql.statement import StatementInfo

READ_KINDS = frozenset(
    {
        "select",
        "show",
        "explain",
        "fetch",
        "move",
        "close",
        "declare",
        "listen",
        "unlisten",
        "deallocate",
        "discard",
        "transaction",
        "set",
        "reset",
        "prepare",
        "execute",
    }
)
# Flags that mean a statement would switch a read-only session to read-write.
READ_WRITE_FLAGS = frozenset(
    {
        "transaction_read_write",
        "setting:default_transaction_read_only",
        "setting:transaction_read_only",
        "set_config_read_only",
        "set_config_dynamic",  # set_config with a name only known at run time
    }
)


def may_write(info: StatementInfo) -> bool:
    if info.kind not in READ_KINDS or info.tables_written or info.modifying_cte:
        return True
    if info.dynamic_sql or info.flags & READ_WRITE_FLAGS:
        return True
    return any(may_write(inner) for inner in info.inner)

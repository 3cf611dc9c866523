"""Settings Bastion itself answers: `SET bastion.reason = '...'` is never forwarded.

A requester explains why they run a statement that needs approval by setting `bastion.reason`
in their session; approvers see it beside the statement. Bastion keeps the value and sends the
server a harmless no-op in the statement's place, so the reason never reaches the database
(or its logs).
"""

from __future__ import annotations

import json
from typing import Any

from pglast.parser import ParseError, parse_sql_json

from bastion.sql.statement import StatementInfo

REASON_SETTING = "bastion.reason"
_REASON_FLAG = "setting:" + REASON_SETTING
MAX_REASON_LENGTH = 2000
# What the server runs instead: it answers with the same command tag and changes nothing.
NOOP_SET = "SET bastion.noop TO DEFAULT"
NOOP_RESET = "RESET bastion.noop"


def sets_reason(info: StatementInfo) -> bool:
    """Whether a statement sets or resets bastion.reason (checked before reason_value)."""
    return _REASON_FLAG in info.flags and info.kind in ("set", "reset")


def reason_value(sql: str) -> str | None:
    """The new value of bastion.reason ('' for RESET / DEFAULT), or None when `sql` is not
    exactly one SET or RESET of it."""
    try:
        tree: dict[str, Any] = json.loads(parse_sql_json(sql))
    except ParseError:
        return None
    statements = tree.get("stmts", [])
    if len(statements) != 1:
        return None
    node = statements[0].get("stmt", {}).get("VariableSetStmt")
    if not isinstance(node, dict) or str(node.get("name", "")).lower() != REASON_SETTING:
        return None
    if node.get("kind") != "VAR_SET_VALUE":
        return ""
    parts = []
    for arg in node.get("args", []):
        const = arg.get("A_Const", {})
        for key in ("sval", "ival", "fval"):
            if key in const:
                value = const[key]
                parts.append(str(next(iter(value.values()), "")) if value else "0")
    return ", ".join(parts)[:MAX_REASON_LENGTH]

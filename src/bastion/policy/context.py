"""The CEL activation: the variables a condition sees, built from a connection and a statement.

This module owns the shape and values of `identity`, `source`, `target`, `time` and
`statement` (docs/policy.md lists every field). Converting values into CEL costs about a
microsecond per map entry, so an `Activation` is built only when a condition is actually
evaluated, and holds only the fields the policy's conditions read; it falls back to every
field when a narrowed evaluation fails, so narrowing never changes an outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import cel

from bastion.pipeline.context import ConnectionContext
from bastion.policy.cel import FUNCTIONS, Condition, FieldUse, Outcome
from bastion.sql.statement import ColumnRef, StatementInfo


def connection_values(context: ConnectionContext, now: float) -> dict[str, dict[str, Any]]:
    """`identity`, `source`, `target` and `time` for a connection at epoch time `now` (UTC)."""
    identity = context.identity
    moment = datetime.fromtimestamp(now, UTC)
    return {
        "identity": {
            "name": identity.name,
            "groups": list(identity.groups),
            "kind": str(identity.kind),
            "auth_method": identity.auth_method,
        },
        "source": {
            "ip": context.source_ip,
            "port": context.source_port,
            "tls": context.tls_version is not None,
            "tls_version": context.tls_version or "",
        },
        "target": {"name": context.target, "labels": dict(context.target_labels)},
        "time": {
            "hour": moment.hour,
            "minute": moment.minute,
            "weekday": moment.weekday(),
            "date": moment.date().isoformat(),
        },
    }


def _column_name(column: ColumnRef) -> str:
    return f"{column.table.qualified}.{column.name}" if column.table else column.name


def _tables(statement: StatementInfo) -> list[str]:
    seen: dict[str, None] = {}
    for table in (*statement.tables_read, *statement.tables_written):
        seen.setdefault(table.qualified, None)
    return list(seen)


def _copy(statement: StatementInfo) -> dict[str, Any]:
    copy = statement.copy
    if copy is None:
        return {"direction": "", "target": "", "path": "", "query": False}
    return {
        "direction": copy.direction,
        "target": copy.target,
        "path": copy.path or "",
        "query": copy.query,
    }


# One getter per `statement` field, so a narrowed activation computes only what it needs.
STATEMENT_GETTERS: Mapping[str, Callable[[StatementInfo], Any]] = {
    "kind": lambda s: s.kind,
    "tables": _tables,
    "tables_read": lambda s: [t.qualified for t in s.tables_read],
    "tables_written": lambda s: [t.qualified for t in s.tables_written],
    "columns": lambda s: [_column_name(c) for c in s.columns],
    "functions": lambda s: list(s.functions),
    # Not applicable and not known both read as false: a rule about missing WHERE clauses
    # then errs on the side of "missing".
    "has_where": lambda s: s.has_where is True,
    "where_always_true": lambda s: s.where_always_true,
    "flags": lambda s: sorted(s.flags),
    "object_type": lambda s: s.object_type or "",
    "modifying_cte": lambda s: s.modifying_cte,
    "dynamic_sql": lambda s: s.dynamic_sql,
    "copy": _copy,
}


def statement_values(statement: StatementInfo) -> dict[str, Any]:
    """Every field of the `statement` variable."""
    return {name: getter(statement) for name, getter in STATEMENT_GETTERS.items()}


class Activation:
    """The variables for one evaluation scope (a connection, or one statement of it).

    `connection` holds the connection variables; `statement` is None for session rules.
    `uses` is what the policy's conditions read (see `cel.field_use`).
    """

    __slots__ = ("_connection", "_full", "_narrow", "_statement", "_uses")

    def __init__(
        self,
        connection: Mapping[str, Mapping[str, Any]],
        statement: StatementInfo | None,
        uses: FieldUse,
    ) -> None:
        self._connection = connection
        self._statement = statement
        self._uses = uses
        self._narrow: cel.Context | None = None
        self._full: cel.Context | None = None

    def evaluate(self, condition: Condition) -> Outcome:
        if self._narrow is None:
            self._narrow = self._build(self._uses)
        outcome = condition.evaluate(self._narrow)
        if outcome.error is None:
            return outcome
        if self._full is None:
            self._full = self._build(None)
        return condition.evaluate(self._full)

    def variables(self) -> dict[str, Any]:
        """Every variable with every field, as plain Python values (for explain)."""
        values: dict[str, Any] = {name: dict(value) for name, value in self._connection.items()}
        if self._statement is not None:
            values["statement"] = statement_values(self._statement)
        return values

    def _build(self, uses: FieldUse | None) -> cel.Context:
        variables: dict[str, Any] = {}
        for name, value in self._connection.items():
            fields = None if uses is None else uses.get(name, frozenset())
            if fields is None:
                variables[name] = value
            elif fields:
                variables[name] = {key: value[key] for key in fields if key in value}
        if self._statement is not None:
            fields = None if uses is None else uses.get("statement", frozenset())
            if fields is None:
                variables["statement"] = statement_values(self._statement)
            elif fields:
                variables["statement"] = {
                    key: STATEMENT_GETTERS[key](self._statement)
                    for key in fields
                    if key in STATEMENT_GETTERS
                }
        return cel.Context(variables=variables, functions=dict(FUNCTIONS))

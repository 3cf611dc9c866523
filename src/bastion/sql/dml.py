"""INSERT, UPDATE, DELETE and MERGE.

The target is written. UPDATE, DELETE and MERGE also read it (they look at its rows to decide
which to change, and a WHERE on a sensitive column is an inference channel), and so do INSERT
... ON CONFLICT and any RETURNING. UPDATE and DELETE get `has_where` and `where_always_true`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion.sql import flags
from bastion.sql.columns import (
    ASSIGNMENT,
    JOIN,
    OTHER,
    RETURNING,
    VALUES,
    WHERE,
    target_names,
)
from bastion.sql.predicates import where_always_true
from bastion.sql.relations import Relation, Scope, alias_name, table_from_range_var
from bastion.sql.statement import TableRef
from bastion.sql.walker import Node, body_of

if TYPE_CHECKING:
    from bastion.sql.collector import Collector, Handler


def _target(collector: Collector, body: Node, scope: Scope) -> TableRef | None:
    relation = body.get("relation")
    if not isinstance(relation, dict):
        return None
    table = table_from_range_var(relation)
    collector.write(table)
    if table.name == "pg_settings" and table.schema in (None, "pg_catalog"):
        # UPDATE pg_settings SET setting = ... WHERE name = ... is set_config() in disguise.
        collector.flags.add(flags.SET_CONFIG_DYNAMIC)
    alias = alias_name(relation)
    scope.relations.append(Relation(alias or table.name, table, aliased=alias is not None))
    return table


def _scope(collector: Collector, body: Node, parent: Scope | None) -> Scope:
    scope = Scope(parent=parent)
    with_clause = body.get("withClause")
    if isinstance(with_clause, dict):
        collector.with_clause(with_clause, scope)
    return scope


def _assignments(
    collector: Collector, targets: object, table: TableRef | None, scope: Scope
) -> None:
    """SET a = expr, (b, c) = (...): the names are assigned, the expressions are values."""
    if not isinstance(targets, list):
        return
    for item in targets:
        res = body_of(item, "ResTarget")
        if res is None:
            collector.expr(item, VALUES, scope)
            continue
        if res.get("name"):
            collector.column(str(res["name"]), ASSIGNMENT, table)
        collector.expr(res.get("indirection"), VALUES, scope)
        collector.expr(res.get("val"), VALUES, scope)


def _where(collector: Collector, body: Node, scope: Scope) -> None:
    where = body.get("whereClause")
    collector.has_where = where is not None
    if where is not None:
        collector.where_always_true = where_always_true(where)
        collector.condition(where, WHERE, scope)


def _returning(collector: Collector, body: Node, table: TableRef | None, scope: Scope) -> None:
    returning = body.get("returningClause")
    if isinstance(returning, dict):
        if table is not None:
            collector.read(table)
        collector.expr(returning.get("exprs"), RETURNING, scope)


def insert(collector: Collector, body: Node, parent: Scope | None) -> None:
    scope = _scope(collector, body, parent)
    # The source query does not see the target, so walk it before the target joins the scope.
    source = body.get("selectStmt")
    subqueries = collector.subqueries
    collector.expr(source, OTHER, scope)
    select = body_of(source, "SelectStmt")
    if select is not None and (
        not select.get("valuesLists") or collector.subqueries > subqueries
    ):  # INSERT ... SELECT, or VALUES ((SELECT ...)): rows copied from other tables
        collector.moves_data = True
    table = _target(collector, body, scope)
    for name in target_names(body.get("cols")):
        collector.column(name, ASSIGNMENT, table)
    conflict = body.get("onConflictClause")
    if isinstance(conflict, dict):
        if table is not None:
            collector.read(table)
        scope.relations.append(Relation("excluded", None, aliased=True, qualified_only=True))
        infer = conflict.get("infer")
        if isinstance(infer, dict):
            for elem in infer.get("indexElems") or ():
                index_elem = body_of(elem, "IndexElem")
                if index_elem is not None and index_elem.get("name"):
                    collector.column(str(index_elem["name"]), OTHER, table)
                elif index_elem is not None:
                    collector.expr(index_elem.get("expr"), OTHER, scope)
            collector.condition(infer.get("whereClause"), WHERE, scope)
        _assignments(collector, conflict.get("targetList"), table, scope)
        collector.condition(conflict.get("whereClause"), WHERE, scope)
    _returning(collector, body, table, scope)


def update(collector: Collector, body: Node, parent: Scope | None) -> None:
    scope = _scope(collector, body, parent)
    table = _target(collector, body, scope)
    if table is not None:
        collector.read(table)
    for item in body.get("fromClause") or ():
        collector.from_item(item, scope)
    _assignments(collector, body.get("targetList"), table, scope)
    _where(collector, body, scope)
    _returning(collector, body, table, scope)


def delete(collector: Collector, body: Node, parent: Scope | None) -> None:
    scope = _scope(collector, body, parent)
    table = _target(collector, body, scope)
    if table is not None:
        collector.read(table)
    for item in body.get("usingClause") or ():
        collector.from_item(item, scope)
    _where(collector, body, scope)
    _returning(collector, body, table, scope)


def merge(collector: Collector, body: Node, parent: Scope | None) -> None:
    scope = _scope(collector, body, parent)
    table = _target(collector, body, scope)
    if table is not None:
        collector.read(table)
    collector.from_item(body.get("sourceRelation"), scope)
    collector.condition(body.get("joinCondition"), JOIN, scope)
    for when in body.get("mergeWhenClauses") or ():
        clause = body_of(when, "MergeWhenClause")
        if clause is None:
            collector.expr(when, OTHER, scope)
            continue
        collector.condition(clause.get("condition"), WHERE, scope)
        _assignments(collector, clause.get("targetList"), table, scope)
        collector.expr(clause.get("values"), VALUES, scope)
    _returning(collector, body, table, scope)


HANDLERS: dict[str, Handler] = {
    "InsertStmt": insert,
    "UpdateStmt": update,
    "DeleteStmt": delete,
    "MergeStmt": merge,
}

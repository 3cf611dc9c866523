"""Column references: which clause they appear in and which table they belong to.

A column is tied to a table only when that is certain: it is qualified by an alias or table
name in scope, or the query level has exactly one relation. Anything else (several relations,
a CTE, a subquery, a function in FROM) leaves `table` None; the reference is still reported.
"""

from __future__ import annotations

from bastion.sql.relations import Scope
from bastion.sql.statement import ColumnRef, TableRef
from bastion.sql.walker import Node

PROJECTION = "projection"
WHERE = "where"
JOIN = "join"
GROUP = "group"
HAVING = "having"
ORDER = "order"
WINDOW = "window"
ASSIGNMENT = "assignment"
RETURNING = "returning"
VALUES = "values"
OTHER = "other"

CLAUSES = (PROJECTION, WHERE, JOIN, GROUP, HAVING, ORDER, WINDOW, ASSIGNMENT, RETURNING, VALUES,
           OTHER)  # fmt: skip

STAR = "*"


def resolve(fields: list[Node] | tuple[()], clause: str, scope: Scope | None) -> list[ColumnRef]:
    """The ColumnRefs a parse-tree ColumnRef (its `fields`) stands for."""
    names: list[str] = []
    star = False
    for item in fields:
        value = item.get("String")
        if value is not None:
            names.append(str(value.get("sval", "")))
        elif "A_Star" in item:
            star = True
    if star:
        return _star(names, clause, scope)
    if not names:
        return []
    if scope is None:
        return [ColumnRef(name=names[-1], clause=clause)]
    if len(names) == 1:
        return _unqualified(names[0], clause, scope)
    # a.b: relation a, column b; s.t.c and db.s.t.c likewise.
    for width in (1, 2, 3):
        if len(names) > width:
            relation = scope.find(names[:width])
            if relation is not None:
                return [ColumnRef(name=names[width], clause=clause, table=relation.table)]
    # No relation by that name here: either a relation of an enclosing query Bastion cannot
    # see (column names[1]) or a composite column names[0]. Report both readings.
    return [ColumnRef(name=names[1], clause=clause), *_unqualified(names[0], clause, scope)]


def _star(qualifier: list[str], clause: str, scope: Scope | None) -> list[ColumnRef]:
    if scope is None:
        return [ColumnRef(name=STAR, clause=clause)]
    if qualifier:
        relation = scope.find(qualifier)
        return [ColumnRef(name=STAR, clause=clause, table=relation.table if relation else None)]
    # `*` expands to every column of every relation of this level.
    refs = [
        ColumnRef(name=STAR, clause=clause, table=relation.table)
        for relation in scope.relations
        if not relation.qualified_only
    ]
    return refs or [ColumnRef(name=STAR, clause=clause)]


def _unqualified(name: str, clause: str, scope: Scope) -> list[ColumnRef]:
    if clause == ORDER and name in scope.output_names:
        # ORDER BY prefers an output column's alias over an input column.
        return [ColumnRef(name=name, clause=clause)]
    relations = scope.nearest_relations()
    table: TableRef | None = relations[0].table if len(relations) == 1 else None
    refs = [ColumnRef(name=name, clause=clause, table=table)]
    # A bare relation name is a whole-row reference (`row_to_json(c) FROM customers c`):
    # report it as that relation's `*` too, since every column of the row is used.
    whole_row = scope.find([name])
    if whole_row is not None:
        refs.append(ColumnRef(name=STAR, clause=clause, table=whole_row.table))
    return refs


def target_names(target_list: object) -> list[str]:
    """The column names of a list of `ResTarget` nodes that name columns."""
    out: list[str] = []
    if isinstance(target_list, list):
        for item in target_list:
            if isinstance(item, dict):
                target: Node | None = item.get("ResTarget")
                if isinstance(target, dict) and target.get("name"):
                    out.append(str(target["name"]))
    return out

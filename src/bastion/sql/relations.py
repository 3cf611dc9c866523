"""Relations in scope: base tables, CTE names, aliases and derived relations.

A `Scope` is one query level (a SELECT, the target of an UPDATE, ...). It knows the CTE names
visible at that level and the relations its FROM clause brought in, and it falls back to the
enclosing level for correlated references, as PostgreSQL does. Only base relations become
`TableRef`s; CTEs, subqueries and functions in FROM are derived relations (table None).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bastion.sql.statement import TableRef
from bastion.sql.walker import Node


@dataclass(slots=True)
class Relation:
    """One FROM item as a query level sees it."""

    name: str  # the alias when there is one, else the relation's own name
    table: TableRef | None  # None for CTEs, subqueries, functions and other derived relations
    aliased: bool = False  # an alias hides the relation's own (and schema-qualified) name
    qualified_only: bool = False  # reachable only as `name.column` (EXCLUDED, NEW, a join alias)


class Scope:
    """One query level."""

    __slots__ = ("ctes", "output_names", "parent", "relations")

    def __init__(self, parent: Scope | None = None) -> None:
        self.parent = parent
        self.ctes: set[str] = set()
        self.relations: list[Relation] = []
        self.output_names: set[str] = set()  # target-list aliases (ORDER BY may use them)

    def is_cte(self, name: str) -> bool:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.ctes:
                return True
            scope = scope.parent
        return False

    def find(self, qualifier: list[str]) -> Relation | None:
        """The relation `qualifier` (`["t"]`, `["s", "t"]` or `["db", "s", "t"]`) names,
        searching this level first and then the enclosing ones."""
        scope: Scope | None = self
        while scope is not None:
            for relation in reversed(scope.relations):
                if _matches(relation, qualifier):
                    return relation
            scope = scope.parent
        return None

    def nearest_relations(self) -> list[Relation]:
        """The relations of the innermost level that has any (for unqualified columns)."""
        scope: Scope | None = self
        while scope is not None:
            visible = [relation for relation in scope.relations if not relation.qualified_only]
            if visible:
                return visible
            scope = scope.parent
        return []


def _matches(relation: Relation, qualifier: list[str]) -> bool:
    if len(qualifier) == 1:
        return relation.name == qualifier[0]
    if relation.aliased or relation.table is None:
        return False
    return relation.table.name == qualifier[-1] and relation.table.schema == qualifier[-2]


def table_from_range_var(range_var: Node) -> TableRef:
    """The table a RangeVar names; the parse tree already holds folded identifiers."""
    schema = range_var.get("schemaname")
    return TableRef(name=str(range_var.get("relname", "")), schema=str(schema) if schema else None)


def table_from_names(names: list[str]) -> TableRef | None:
    """`["s", "t"]` -> s.t; a leading database name is dropped."""
    if not names:
        return None
    if len(names) == 1:
        return TableRef(name=names[0])
    return TableRef(name=names[-1], schema=names[-2])


def alias_name(body: Node) -> str | None:
    alias: Any = body.get("alias")
    if isinstance(alias, dict):
        name = alias.get("aliasname")
        return str(name) if name else None
    return None

"""The vocabulary of view lineage: what an output column comes from, and the names in scope.

This module owns `Lineage` (a plain reference to one relation column, or the set of columns a
computed value may carry), how lineages combine (`merge` for UNION arms and ambiguous names,
`compute` for expressions), and the name scopes of a query level (`RangeEntry` for each FROM
item, `Scope` for a level and the levels around it). Apart from reading an alias clause
(`aliased`), it knows nothing of parse trees: `lineage` walks those.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from bastion.catalog.model import ColumnKey
from bastion.sql.walker import strings


class LineageUnresolved(Exception):
    """The definition could not be analyzed (unparsable, or a shape this module refuses)."""


@dataclass(frozen=True, slots=True)
class Lineage:
    """One output column: `origin` when it is a plain reference to a relation column;
    `sources`, every relation column its value may come from; `opaque` when part of it could
    not be followed (a relation or function Bastion knows nothing about)."""

    origin: ColumnKey | None
    sources: frozenset[ColumnKey]
    opaque: bool = False

    @classmethod
    def of_column(cls, key: ColumnKey) -> Lineage:
        return cls(key, frozenset((key,)))

    @property
    def plain(self) -> bool:
        return self.origin is not None and not self.opaque

    def derived(self) -> Lineage:
        """The same sources, no longer a plain reference (a cast, a field of it, ...)."""
        return self if self.origin is None else Lineage(None, self.sources, self.opaque)


UNKNOWN = Lineage(None, frozenset(), opaque=True)
CONSTANT = Lineage(None, frozenset())


def merge(lineages: Iterable[Lineage]) -> Lineage:
    """One column fed by several: a plain reference only if every one is the same reference."""
    items = list(lineages)
    if not items:
        return CONSTANT
    sources = frozenset().union(*(item.sources for item in items))
    opaque = any(item.opaque for item in items)
    origins = {item.origin for item in items}
    origin = origins.pop() if len(origins) == 1 else None
    return Lineage(origin, sources, opaque)


def compute(lineages: Iterable[Lineage]) -> Lineage:
    """A value computed from several inputs: never a plain reference."""
    return merge(lineages).derived()


OutputColumn = tuple[str, Lineage]


@dataclass
class RangeEntry:
    """A name in a FROM clause: a table or view, a subquery, a CTE, a function, a join.

    `complete` is False when the relation may have columns not listed (a function's result, a
    relation missing from the catalog); names not listed then resolve to `rest`.
    """

    refname: str | None
    columns: list[OutputColumn]
    schema: str | None = None
    relname: str | None = None
    complete: bool = True
    rest: Lineage = UNKNOWN

    def column(self, name: str) -> Lineage | None:
        found = [lineage for column, lineage in self.columns if column == name]
        if found:
            return merge(found)
        return None if self.complete else self.rest

    def whole_row(self) -> Lineage:
        parts = [lineage for _, lineage in self.columns]
        if not self.complete:
            parts.append(self.rest)
        return compute(parts)

    def matches(self, qualifier: list[str]) -> bool:
        if len(qualifier) == 1:
            return self.refname == qualifier[0]
        if self.refname != self.relname:  # an alias hides the relation's own name
            return False
        return qualifier[-2:] == [self.schema, self.relname]


@dataclass
class Scope:
    relations: list[RangeEntry] = field(default_factory=list)
    ctes: dict[str, list[OutputColumn]] = field(default_factory=dict)
    parent: Scope | None = None

    def chain(self) -> Iterator[Scope]:
        scope: Scope | None = self
        while scope is not None:
            yield scope
            scope = scope.parent

    def cte(self, name: str) -> list[OutputColumn] | None:
        for scope in self.chain():
            if name in scope.ctes:
                return scope.ctes[name]
        return None

    def everything(self) -> Lineage:
        """Every column in reach, for a name that cannot be resolved."""
        parts = [relation.whole_row() for scope in self.chain() for relation in scope.relations]
        return Lineage(None, compute(parts).sources, opaque=True)


def find_relation(qualifier: list[str], scope: Scope) -> RangeEntry | None:
    for level in scope.chain():
        for relation in level.relations:
            if relation.matches(qualifier):
                return relation
    return None


def rename(columns: list[OutputColumn], aliases: list[str]) -> list[OutputColumn]:
    if len(aliases) > len(columns):
        raise LineageUnresolved("more column aliases than columns")
    return [
        (aliases[index] if index < len(aliases) else name, lineage)
        for index, (name, lineage) in enumerate(columns)
    ]


def aliased(
    alias: Any,
    default_name: str | None,
    columns: list[OutputColumn],
    *,
    complete: bool = True,
    rest: Lineage = UNKNOWN,
) -> RangeEntry:
    refname = default_name
    if isinstance(alias, dict):
        refname = str(alias.get("aliasname", "")) or default_name
        renamed = strings(alias.get("colnames"))
        if renamed:
            if len(renamed) > len(columns):
                if complete:
                    raise LineageUnresolved("more column aliases than columns")
                columns = [*columns, *((name, rest) for name in renamed[len(columns) :])]
            columns = rename(columns, renamed)
    return RangeEntry(
        refname=refname, columns=columns, relname=default_name, complete=complete, rest=rest
    )

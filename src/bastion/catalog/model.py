"""The catalog of one target as Bastion keeps it: relations, their columns and view definitions.

This module owns plain, immutable data read from pg_class / pg_attribute / pg_namespace /
pg_type (`loader` reads it) and the lookups the lineage analysis needs (a relation by schema
and name, the columns of a relation in attribute order). It does not connect to anything and
does not classify.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from bastion.masking.classifier import CatalogColumn

ColumnKey = tuple[int, int]
"""(table OID, attribute number): how PostgreSQL's RowDescription names a column's origin."""


class RelationKind(StrEnum):
    """The relations whose columns can appear in results (pg_class.relkind)."""

    TABLE = "r"
    PARTITIONED_TABLE = "p"
    VIEW = "v"
    MATERIALIZED_VIEW = "m"
    FOREIGN_TABLE = "f"

    @property
    def has_definition(self) -> bool:
        """Views and materialized views: their columns come from a query."""
        return self in (RelationKind.VIEW, RelationKind.MATERIALIZED_VIEW)


@dataclass(frozen=True, slots=True)
class Relation:
    """One relation. `parent_oid` is set for a partition (its partitioned table);
    `definition` is the query of a view or materialized view, schema-qualified
    (pg_get_viewdef under an empty search_path), or None when it could not be read."""

    oid: int
    schema: str
    name: str
    kind: RelationKind
    parent_oid: int | None = None
    definition: str | None = None

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class Catalog:
    """Every relation and column of a target that results can come from."""

    relations: Mapping[int, Relation]
    columns: tuple[CatalogColumn, ...]
    _by_name: Mapping[tuple[str, str], Relation] = field(init=False, repr=False, compare=False)
    _by_relation: Mapping[int, tuple[CatalogColumn, ...]] = field(
        init=False, repr=False, compare=False
    )
    _by_key: Mapping[ColumnKey, CatalogColumn] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        grouped: dict[int, list[CatalogColumn]] = {}
        for column in self.columns:
            grouped.setdefault(column.table_oid, []).append(column)
        by_relation = {
            oid: tuple(sorted(items, key=lambda column: column.attnum))
            for oid, items in grouped.items()
        }
        object.__setattr__(self, "relations", MappingProxyType(dict(self.relations)))
        object.__setattr__(
            self,
            "_by_name",
            MappingProxyType({(r.schema, r.name): r for r in self.relations.values()}),
        )
        object.__setattr__(self, "_by_relation", MappingProxyType(by_relation))
        object.__setattr__(
            self,
            "_by_key",
            MappingProxyType({(c.table_oid, c.attnum): c for c in self.columns}),
        )

    @classmethod
    def of(cls, relations: Iterable[Relation], columns: Iterable[CatalogColumn]) -> Catalog:
        return cls({relation.oid: relation for relation in relations}, tuple(columns))

    def find(self, schema: str, name: str) -> Relation | None:
        """The relation `schema.name`, if the catalog holds it."""
        return self._by_name.get((schema, name))

    def columns_of(self, oid: int) -> Sequence[CatalogColumn]:
        """The columns of relation `oid` in attribute order (dropped columns are absent)."""
        return self._by_relation.get(oid, ())

    def column(self, key: ColumnKey) -> CatalogColumn | None:
        return self._by_key.get(key)

    def qualified(self, key: ColumnKey) -> str:
        """`schema.table.column` of a column, for reasons people read."""
        column = self._by_key.get(key)
        return column.qualified if column is not None else f"column {key[1]} of OID {key[0]}"

"""The catalog of each upstream target, read and classified for masking.

`loader` reads a target's relations, columns and view definitions over a short psycopg
connection (`connect` builds its settings from the target); `lineage` follows each view
column's definition to the columns it comes from (in the terms of `scope`); `classify` turns
it all into one Classification per (table OID, attribute number), the key PostgreSQL's
RowDescription uses; `cache` keeps that snapshot fresh on a worker thread. Threads and
blocking I/O, never asyncio: the event loop only ever reads the current snapshot.
"""

from __future__ import annotations

from bastion.catalog.cache import (
    DEFAULT_TTL_SECONDS,
    CatalogCache,
    CatalogSnapshot,
    build_catalog_cache,
)
from bastion.catalog.classify import CatalogClassification, classify_catalog
from bastion.catalog.connect import CatalogSource
from bastion.catalog.errors import CatalogUnavailable
from bastion.catalog.lineage import view_lineage
from bastion.catalog.loader import load_catalog, read_catalog
from bastion.catalog.model import Catalog, ColumnKey, Relation, RelationKind
from bastion.catalog.scope import Lineage

__all__ = [
    "DEFAULT_TTL_SECONDS",
    "Catalog",
    "CatalogCache",
    "CatalogClassification",
    "CatalogSnapshot",
    "CatalogSource",
    "CatalogUnavailable",
    "ColumnKey",
    "Lineage",
    "Relation",
    "RelationKind",
    "build_catalog_cache",
    "classify_catalog",
    "load_catalog",
    "read_catalog",
    "view_lineage",
]

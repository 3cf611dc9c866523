"""Reading a target's catalog: every column results can come from, and every view's query.

This module owns the catalog queries and nothing else: one read-only, repeatable-read
transaction on a short-lived psycopg connection, two queries over pg_attribute, pg_class,
pg_namespace and pg_type (domains resolved to their base types, dropped and system columns left
out, system schemas skipped) and pg_get_viewdef for views and materialized views, read under an
empty search_path so that every relation in a definition is schema-qualified. It blocks: call
it from a worker thread, never from the event loop. Errors name the target and its address,
never a password or a connection string.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

from bastion.catalog.connect import CatalogSource
from bastion.catalog.errors import CatalogUnavailable
from bastion.catalog.model import Catalog, Relation, RelationKind
from bastion.masking.classifier import CatalogColumn

STATEMENT_TIMEOUT = "60s"

_RELATION_FILTER = """
    c.relkind IN ('r', 'p', 'v', 'm', 'f')
    AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    AND n.nspname NOT LIKE 'pg\\_toast%'
"""

# A domain may be based on another domain: follow typbasetype down to a type that is not one,
# keeping the type modifier of the last step (varchar(20) under two domains is varchar(20)).
COLUMNS_QUERY = f"""
WITH RECURSIVE domain_chain(domain_oid, base_oid, base_typmod) AS (
    SELECT t.oid, t.typbasetype, t.typtypmod
    FROM pg_catalog.pg_type t
    WHERE t.typtype = 'd'
  UNION ALL
    SELECT d.domain_oid, t.typbasetype, t.typtypmod
    FROM domain_chain d
    JOIN pg_catalog.pg_type t ON t.oid = d.base_oid AND t.typtype = 'd'
), domain_base AS (
    SELECT d.domain_oid, d.base_oid, d.base_typmod
    FROM domain_chain d
    JOIN pg_catalog.pg_type t ON t.oid = d.base_oid AND t.typtype <> 'd'
)
SELECT
    c.oid::pg_catalog.int8,
    a.attnum::pg_catalog.int4,
    n.nspname::pg_catalog.text,
    c.relname::pg_catalog.text,
    a.attname::pg_catalog.text,
    COALESCE(b.base_oid, a.atttypid)::pg_catalog.int8,
    pg_catalog.format_type(
        COALESCE(b.base_oid, a.atttypid),
        CASE WHEN b.base_oid IS NULL THEN a.atttypmod ELSE b.base_typmod END
    )
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN domain_base b ON b.domain_oid = a.atttypid
WHERE a.attnum > 0 AND NOT a.attisdropped AND {_RELATION_FILTER}
ORDER BY c.oid, a.attnum
"""

RELATIONS_QUERY = f"""
SELECT
    c.oid::pg_catalog.int8,
    n.nspname::pg_catalog.text,
    c.relname::pg_catalog.text,
    c.relkind::pg_catalog.text,
    CASE WHEN c.relispartition THEN (
        SELECT i.inhparent::pg_catalog.int8
        FROM pg_catalog.pg_inherits i
        WHERE i.inhrelid = c.oid
        LIMIT 1
    ) END,
    CASE WHEN c.relkind IN ('v', 'm') THEN pg_catalog.pg_get_viewdef(c.oid) END
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE {_RELATION_FILTER}
"""


def load_catalog(conninfo_kwargs: Mapping[str, Any]) -> Catalog:
    """Connect with `conninfo_kwargs` (as for `psycopg.connect`) and read the catalog.

    Raises psycopg.Error on failure; `read_catalog` turns that into a message safe to show.
    """
    with psycopg.connect(**conninfo_kwargs) as conn:
        conn.read_only = True
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with conn.cursor() as cur:
            # Local to this transaction: an empty search_path makes pg_get_viewdef qualify
            # every relation that is not in pg_catalog.
            cur.execute(
                "SELECT pg_catalog.set_config('search_path', '', true),"
                " pg_catalog.set_config('statement_timeout', %s, true)",
                (STATEMENT_TIMEOUT,),
            )
            cur.execute(COLUMNS_QUERY)
            columns = [CatalogColumn(*row) for row in cur.fetchall()]
            cur.execute(RELATIONS_QUERY)
            relations = [
                Relation(oid, schema, name, RelationKind(kind), parent, definition)
                for oid, schema, name, kind, parent, definition in cur.fetchall()
            ]
        conn.rollback()
    return Catalog.of(relations, columns)


def read_catalog(source: CatalogSource) -> Catalog:
    """The catalog of `source`'s target; CatalogUnavailable says why it could not be read."""
    kwargs = source.connection_kwargs()
    try:
        return load_catalog(kwargs)
    except psycopg.Error as error:
        reason = _first_line(str(error)) or type(error).__name__
        password = kwargs.get("password")
        if password:
            reason = reason.replace(str(password), "****")
        raise CatalogUnavailable(
            f'cannot read the catalog of target "{source.name}" at {source.address}: {reason}',
            hint="check that the target's server is running and that its default credential "
            "may connect",
        ) from None  # the reason says it all; keep driver state out of logged tracebacks


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")

"""StatementInfo: what Bastion knows about one SQL statement after analysis.

Produced by `bastion.sql.analyze` from PostgreSQL's own parse tree; consumed by policy,
masking and audit. Everything here is plain data: frozen, hashable, cheap to cache.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TableRef:
    """A relation as written in the statement: schema when given, name as PostgreSQL folds it
    (unquoted identifiers lower-cased, quoted ones kept exactly)."""

    name: str
    schema: str | None = None

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


@dataclass(frozen=True, slots=True)
class ColumnRef:
    """A column reference and the clause it appears in.

    `table` is the relation the column was resolved to when that is certain (qualified by
    alias or table name, or the only relation in scope), else None. `name` is `*` for star.
    `clause` is one of: projection, where, join, group, having, order, window, assignment,
    returning, values, other.
    """

    name: str
    clause: str
    table: TableRef | None = None


@dataclass(frozen=True, slots=True)
class CopyInfo:
    """COPY's direction and endpoint. `target` is stdin, stdout, program or file; `path` the
    program command or server file name when there is one."""

    direction: str  # "from" or "to"
    target: str
    path: str | None = None
    query: bool = False  # COPY (query) TO ...


@dataclass(frozen=True, slots=True)
class StatementInfo:
    """One statement of a client message, analyzed.

    `kind` is a snake_case name: select, insert,
    update, delete, merge, create_<object>, alter_<object>, drop_<object>, truncate, grant,
    revoke, copy, set, reset, set_role, set_session_authorization, transaction, do, call,
    explain, prepare, execute, deallocate, declare, fetch, close, listen, unlisten, notify,
    vacuum, alter_system, load, show, discard, lock, other... (docs/statements.md lists them
    all) and `unknown` when the statement could not be parsed (then `error` says why).
    `normalized` has every literal replaced by a placeholder and is safe to log;
    `fingerprint` identifies statements that differ only in their literals.
    """

    kind: str
    text: str
    normalized: str
    fingerprint: str
    error: str | None = None
    object_type: str | None = None  # for create/alter/drop/comment: table, schema, role, ...
    tables_read: tuple[TableRef, ...] = ()
    tables_written: tuple[TableRef, ...] = ()
    columns: tuple[ColumnRef, ...] = ()
    functions: tuple[str, ...] = ()  # lower-case; schema-qualified when written so
    has_where: bool | None = None  # for update/delete: None when not applicable
    where_always_true: bool = False  # WHERE 1=1, WHERE true, WHERE 'a'='a', ...
    modifying_cte: bool = False  # a WITH clause that inserts, updates or deletes
    copy: CopyInfo | None = None
    dynamic_sql: bool = False  # EXECUTE of a string in a DO body or function, PREPARE ... AS
    flags: frozenset[str] = frozenset()  # facts guardrails look for, see docs/policy.md
    inner: tuple[StatementInfo, ...] = ()  # EXPLAIN's, PREPARE's, DO body's, CTE statements
    # Columns whose values can be learned without being returned: filtered on other than by
    # equality with a constant, ordered, grouped, or tested in a CASE (see bastion.sql.inference).
    # `clause` says which clause made the column one. Inner statements' are included.
    inference_columns: tuple[ColumnRef, ...] = ()
    # The statement copies query results somewhere other than the client: CREATE TABLE AS,
    # SELECT INTO, CREATE / REFRESH MATERIALIZED VIEW, INSERT ... SELECT, COPY ... TO a file or
    # program. What the source query reads is in `columns`.
    moves_data: bool = False

    @property
    def parsed(self) -> bool:
        return self.error is None

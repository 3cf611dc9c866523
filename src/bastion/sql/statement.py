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
class OutputColumn:
    """One column of a statement's result, in result order, and the source columns its value
    is computed from.

    `refs` are the columns the expression reads (those only in a CASE condition, a FILTER or
    a window too), each with its base table; a ref without one makes the output opaque.
    `plain` says the expression is a single column reference
    and nothing else (`c.email`, not `c.email::text` nor `upper(c.email)`); it is syntactic,
    so a plain output can be opaque too (`s.email` from a subquery `s`). `star` stands for
    every column of `refs[0].table`, in the table's order (`*` or `t.*` over one base table).
    `opaque` means the lineage is not fully known (a column of a subquery, CTE or function,
    an ambiguous name, a whole-row reference, a subquery in the expression): treat the column
    as possibly reading any column the statement reads.
    """

    refs: tuple[ColumnRef, ...] = ()
    plain: bool = False
    star: bool = False
    opaque: bool = False


@dataclass(frozen=True, slots=True)
class CopyInfo:
    """COPY's direction, endpoint and data format. `target` is stdin, stdout, program or file;
    `path` the program command or server file name when there is one.

    The format options are as written: `delimiter`, `null`, `quote`, `escape` and `encoding`
    are None when not given (the format's default applies). `options_known` is False when an
    option or its value could not be read (an unexpected node, an unknown option or format
    name): the server rejects those, but a caller that must understand the data refuses.
    """

    direction: str  # "from" or "to"
    target: str
    path: str | None = None
    query: bool = False  # COPY (query) TO ...
    format: str = "text"  # text, csv or binary
    delimiter: str | None = None
    null: str | None = None
    header: bool = False  # HEADER MATCH (COPY FROM only) counts as a header
    quote: str | None = None
    escape: str | None = None
    force_quote: bool = False  # FORCE_QUOTE given, for some columns or all
    encoding: str | None = None
    options_known: bool = True


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
    # The result's columns, in order, with the columns each reads (see OutputColumn): for a
    # SELECT, VALUES, a RETURNING list, and COPY ... TO. None for other statements and when
    # the result's columns cannot be lined up with the select list (`*` over a join or a
    # subquery, `(x).*`, a set operation whose arms disagree).
    outputs: tuple[OutputColumn, ...] | None = None

    @property
    def parsed(self) -> bool:
        return self.error is None

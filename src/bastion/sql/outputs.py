"""Output-column lineage: which source columns each column of a statement's result reads.

Masking decides column by column, so it needs, for every column a statement returns, the base
table columns that column's expression is computed from (`StatementInfo.outputs`). This module
owns that answer. It reads only the select list (or RETURNING list, or COPY's column list) of
the statement's outermost query level, with just enough of FROM and WITH to know what each
name there refers to; the collector's full walk reports everything else.

It fails closed: a column whose lineage is not certain is `opaque` (a column of a subquery,
CTE, function or VALUES in FROM, an unqualified name with several relations in scope, a
whole-row reference, a subquery inside the expression), and when the result's columns cannot
be lined up with the select list at all (`*` over a join or a derived relation, `(x).*`, set
operation arms of different widths) there are no outputs (None). Names resolve exactly as the
collector resolves them (`bastion.sql.columns.resolve` over a `Scope`).
"""

from __future__ import annotations

from typing import Any

from bastion.sql.columns import PROJECTION, RETURNING, STAR, resolve
from bastion.sql.inference import is_bare_column
from bastion.sql.relations import Relation, Scope, alias_name, table_from_range_var
from bastion.sql.statement import ColumnRef, OutputColumn
from bastion.sql.walker import Node, body_of, list_items, strings, unwrap

Outputs = tuple[OutputColumn, ...]

_DML = frozenset({"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"})

# Node types that read no column and hold no subquery.
_LEAVES = frozenset(
    {"A_Const", "ParamRef", "String", "Integer", "Float", "Boolean", "BitString", "A_Star",
     "TypeName", "SQLValueFunction", "SetToDefault", "MergeSupportFunc"}
)  # fmt: skip

# A RETURNING list sees the target's rows before and after the change as `old` and `new`
# (PostgreSQL 18), unless RETURNING WITH (OLD AS o, NEW AS n) renames them.
_RETURNING_ALIASES = {"RETURNING_OPTION_OLD": "old", "RETURNING_OPTION_NEW": "new"}


def statement_outputs(node_type: str, body: Node) -> Outputs | None:
    """The outputs of a statement node of type `node_type`; None when it returns no rows or
    its columns cannot be lined up."""
    if node_type == "SelectStmt":
        if body.get("intoClause") is not None:  # SELECT ... INTO returns no rows
            return None
        return _query(body, None)
    if node_type in _DML:
        return _returning(node_type, body)
    if node_type == "CopyStmt":
        return _copy(body)
    return None


# -- query levels ----------------------------------------------------------------------------


def _query(body: Node, parent: Scope | None) -> Outputs | None:
    """A SELECT, VALUES or set operation (`body` unwrapped)."""
    scope = Scope(parent=parent)
    _add_ctes(body, scope)
    if body.get("op", "SETOP_NONE") != "SETOP_NONE":
        arms = [body.get("larg"), body.get("rarg")]
        return _merge([_query(arm, scope) if isinstance(arm, dict) else None for arm in arms])
    values = body.get("valuesLists")
    if values:
        return _values(values, scope)
    for item in body.get("fromClause") or ():
        _from_item(item, scope)
    windows: dict[str, Node] = {}
    for window in body.get("windowClause") or ():
        window_body = body_of(window, "WindowDef")
        if window_body is not None and window_body.get("name"):
            windows[str(window_body["name"])] = window_body
    return _targets(body.get("targetList"), PROJECTION, scope, windows)


def _merge(arms: list[Outputs | None]) -> Outputs | None:
    """A set operation's output i reads what output i of every arm reads. A star cannot be
    lined up with the other arm's columns without the table's definition."""
    known: list[Outputs] = []
    for arm in arms:
        if arm is None or any(output.star for output in arm):
            return None
        known.append(arm)
    width = len(known[0])
    if any(len(arm) != width for arm in known):
        return None
    merged: list[OutputColumn] = []
    for position in range(width):
        refs: dict[ColumnRef, None] = {}
        opaque = False
        for arm in known:
            refs.update(dict.fromkeys(arm[position].refs))
            opaque = opaque or arm[position].opaque
        merged.append(OutputColumn(refs=tuple(refs), opaque=opaque))
    return tuple(merged)


def _values(rows: list[Any], scope: Scope) -> Outputs | None:
    """VALUES (...), (...): column i reads what the i-th item of every row reads."""
    lists = [list_items(row) for row in rows]
    width = len(lists[0])
    if not width or any(len(items) != width for items in lists):
        return None
    outputs: list[OutputColumn] = []
    for position in range(width):
        lineage = _Lineage(PROJECTION, scope, {})
        for items in lists:
            lineage.expr(items[position])
        outputs.append(lineage.output(plain=False))
    return tuple(outputs)


def _targets(targets: Any, clause: str, scope: Scope, windows: dict[str, Node]) -> Outputs | None:
    """One output per select-list (or RETURNING) entry; None when an entry stands for a number
    of columns Bastion cannot know."""
    outputs: list[OutputColumn] = []
    for target in targets if isinstance(targets, list) else ():
        res = body_of(target, "ResTarget")
        if res is None:
            outputs.append(OutputColumn(opaque=True))
            continue
        value = res.get("val")
        column = body_of(value, "ColumnRef")
        fields = column.get("fields") if column is not None else None
        if isinstance(fields, list) and fields and "A_Star" in fields[-1]:
            star = _star(strings(fields[:-1]), clause, scope)
            if star is None:
                return None
            outputs.append(star)
            continue
        if _expands(value):
            return None
        lineage = _Lineage(clause, scope, windows)
        lineage.expr(value)
        outputs.append(lineage.output(plain=is_bare_column(value)))
    return tuple(outputs)


def _star(qualifier: list[str], clause: str, scope: Scope) -> OutputColumn | None:
    """`*` or `t.*` as a whole entry: one star output when it covers exactly one base table."""
    if qualifier:
        relation = scope.find(qualifier)
    else:
        relations = [relation for relation in scope.relations if not relation.qualified_only]
        relation = relations[0] if len(relations) == 1 else None
    if relation is None or relation.table is None:
        return None
    return OutputColumn(refs=(ColumnRef(STAR, clause, relation.table),), star=True)


def _expands(value: Any) -> bool:
    """`(x).*`: a composite's fields, as many columns as it has."""
    indirection = body_of(value, "A_Indirection")
    if indirection is None:
        return False
    items = indirection.get("indirection") or []
    return bool(items) and isinstance(items[-1], dict) and "A_Star" in items[-1]


# -- relations in scope -----------------------------------------------------------------------


def _add_ctes(body: Node, scope: Scope) -> None:
    """The names a WITH clause defines: a relation by one of them is derived, not a table."""
    with_clause = body.get("withClause")
    if isinstance(with_clause, dict):
        for cte in with_clause.get("ctes") or ():
            cte_body = body_of(cte, "CommonTableExpr")
            if cte_body is not None:
                scope.ctes.add(str(cte_body.get("ctename", "")))


def _from_item(item: Any, scope: Scope) -> None:
    """Add the relations one FROM item brings into `scope`. Every item but a join adds one,
    derived or not, so that an unqualified name is never taken for the only table's column
    when a derived relation sits beside it."""
    unwrapped = unwrap(item) if isinstance(item, dict) else None
    if unwrapped is None:
        scope.relations.append(Relation("", None, aliased=True))
        return
    node_type, body = unwrapped
    if node_type == "RangeVar":
        scope.relations.append(_range_var(body, scope))
    elif node_type == "JoinExpr":
        _from_item(body.get("larg"), scope)
        _from_item(body.get("rarg"), scope)
        alias = alias_name(body)
        if alias:
            scope.relations.append(Relation(alias, None, aliased=True, qualified_only=True))
    elif node_type == "RangeTableSample":
        _from_item(body.get("relation"), scope)
    else:  # a subquery, a function, XMLTABLE, JSON_TABLE, and anything newer
        scope.relations.append(Relation(alias_name(body) or "", None, aliased=True))


def _range_var(body: Node, scope: Scope) -> Relation:
    """A named relation: a CTE (derived) when an unqualified name matches one, else a table."""
    alias = alias_name(body)
    name = str(body.get("relname", ""))
    qualified = bool(body.get("schemaname") or body.get("catalogname"))
    if not qualified and scope.is_cte(name):
        return Relation(alias or name, None, aliased=alias is not None)
    table = table_from_range_var(body)
    return Relation(alias or table.name, table, aliased=alias is not None)


# -- statements -------------------------------------------------------------------------------


def _returning(node_type: str, body: Node) -> Outputs | None:
    """INSERT, UPDATE, DELETE or MERGE: the RETURNING list, None without one."""
    returning = body.get("returningClause")
    relation = body.get("relation")
    if not isinstance(returning, dict) or not isinstance(relation, dict):
        return None
    scope = Scope()
    _add_ctes(body, scope)
    table = table_from_range_var(relation)
    aliases = _returning_aliases(returning)
    for name in aliases:
        scope.relations.append(Relation(name, table, aliased=True, qualified_only=True))
    alias = alias_name(relation)
    scope.relations.append(Relation(alias or table.name, table, aliased=alias is not None))
    target_level = len(scope.relations)
    if node_type == "UpdateStmt":
        sources = body.get("fromClause") or []
    elif node_type == "DeleteStmt":
        sources = body.get("usingClause") or []
    elif node_type == "MergeStmt":
        sources = [body.get("sourceRelation")]
    else:
        sources = []
    for item in sources:
        _from_item(item, scope)
    _shadow_clashes(aliases, scope, target_level)
    return _targets(returning.get("exprs"), RETURNING, scope, {})


def _returning_aliases(returning: Node) -> list[str]:
    aliases = dict(_RETURNING_ALIASES)
    for option in returning.get("options") or ():
        body = body_of(option, "ReturningOption")
        if body is not None and body.get("option") in aliases and body.get("value"):
            aliases[str(body["option"])] = str(body["value"])
    return list(aliases.values())


def _shadow_clashes(aliases: list[str], scope: Scope, first_source: int) -> None:
    """An `old` or `new` that is also the name of a FROM item is not certainly the target:
    shadow it with a derived relation so that its columns come out opaque."""
    sources = {relation.name for relation in scope.relations[first_source:]}
    for name in aliases:
        if name in sources:
            scope.relations.append(Relation(name, None, aliased=True, qualified_only=True))


def _copy(body: Node) -> Outputs | None:
    """COPY ... TO: the query's outputs, or the table's listed columns (all of them, `*`)."""
    if body.get("is_from"):
        return None
    query = body.get("query")
    if query is not None:
        unwrapped = unwrap(query) if isinstance(query, dict) else None
        if unwrapped is None or unwrapped[0] == "CopyStmt":
            return None
        return statement_outputs(*unwrapped)
    relation = body.get("relation")
    if not isinstance(relation, dict):
        return None
    table = table_from_range_var(relation)
    names = strings(body.get("attlist"))
    if not names:
        return (OutputColumn(refs=(ColumnRef(STAR, PROJECTION, table),), star=True),)
    return tuple(
        OutputColumn(refs=(ColumnRef(name, PROJECTION, table),), plain=True) for name in names
    )


# -- expressions ------------------------------------------------------------------------------


class _Lineage:
    """The columns one output expression reads, and whether that list is certain."""

    __slots__ = ("clause", "opaque", "refs", "scope", "windows")

    def __init__(self, clause: str, scope: Scope, windows: dict[str, Node]) -> None:
        self.clause = clause
        self.scope = scope
        self.windows = windows  # WINDOW w AS (...), for OVER w
        self.refs: dict[ColumnRef, None] = {}
        self.opaque = False

    def output(self, plain: bool) -> OutputColumn:
        # `plain` is syntactic and may come with `opaque`, except for a bare relation name:
        # that is a whole row (resolve reports it as `*`), not one column.
        plain = plain and not any(ref.name == STAR for ref in self.refs)
        return OutputColumn(refs=tuple(self.refs), plain=plain, opaque=self.opaque)

    def expr(self, value: Any) -> None:
        kind = type(value)
        if kind is list:
            for item in value:
                if type(item) is dict or type(item) is list:
                    self.expr(item)
            return
        if kind is not dict:
            return
        if len(value) == 1:
            ((node_type, body),) = value.items()
            if node_type in _LEAVES:
                return
            if node_type == "ColumnRef":
                self._column_ref(body)
                return
            if node_type == "SubLink":
                # What the subquery reads is resolved in its own scope, which this module
                # does not build: the collector reports it, the output is opaque.
                self.opaque = True
                self.expr(body.get("testexpr"))
                return
            if node_type == "FuncCall" and isinstance(body.get("over"), dict):
                over = body["over"]  # OVER w, OVER (w ORDER BY ...)
                self._named_window(over.get("refname") or over.get("name"))
        for child in value.values():
            if type(child) is dict or type(child) is list:
                self.expr(child)

    def _named_window(self, name: Any) -> None:
        """The partition and order of a window named in WINDOW, and of those it extends."""
        seen: set[str] = set()
        while isinstance(name, str) and name not in seen:
            seen.add(name)
            window = self.windows.get(name)
            if window is None:
                return
            self.expr(window)
            name = window.get("refname")

    def _column_ref(self, body: Node) -> None:
        refs = resolve(body.get("fields", ()), self.clause, self.scope)
        if not refs:
            self.opaque = True
        for ref in refs:
            self.refs[ref] = None
            if ref.table is None or ref.name == STAR:
                self.opaque = True

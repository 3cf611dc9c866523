"""Where each column of a view comes from: its definition read with the server's own grammar.

This module owns the lineage analysis of view definitions (`pg_get_viewdef` output, parsed with
pglast's `parse_sql_json` and walked as plain dicts). For every output column it reports a
`Lineage`: the one relation column it is a plain reference to (through aliases, joins,
subqueries, CTEs and other views), if any, and every relation column its value was computed
from. It resolves names against the `Catalog`, so `c.email` and an unqualified `email` find the
same column. It decides nothing about sensitivity (`classify` does) and fails closed: whatever
it cannot follow is marked `opaque` and keeps every column that could have contributed, and a
definition it cannot analyze at all raises `LineageUnresolved` so the caller can fall back to
`referenced_columns`.

Rules that keep values out of the lineage, because they cannot carry them: `count(...)`,
`EXISTS (...)`, `IS [NOT] NULL`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pglast.parser import ParseError, parse_sql_json

from bastion.catalog.model import Catalog, ColumnKey
from bastion.catalog.scope import (
    CONSTANT,
    UNKNOWN,
    Lineage,
    LineageUnresolved,
    OutputColumn,
    RangeEntry,
    Scope,
    aliased,
    compute,
    find_relation,
    merge,
    rename,
)
from bastion.sql.walker import Node, body_of, list_items, strings

# Functions whose result says nothing about their arguments' values. Unqualified names in a
# view definition read under an empty search_path are pg_catalog's.
_VALUELESS_FUNCTIONS = frozenset({("count",), ("pg_catalog", "count")})
# Recursive CTEs are iterated until their sources stop growing; this bounds pathological ones.
_MAX_RECURSIVE_PASSES = 64


def parse_definition(definition: str) -> Node:
    """The one SELECT of a view definition, as libpg_query's JSON tree."""
    try:
        tree = json.loads(parse_sql_json(definition))
    except ParseError as error:
        raise LineageUnresolved(f"the definition does not parse: {error}") from error
    statements = tree.get("stmts", [])
    if len(statements) != 1:
        raise LineageUnresolved("the definition is not one statement")
    select = body_of(statements[0].get("stmt"), "SelectStmt")
    if select is None:
        raise LineageUnresolved("the definition is not a SELECT")
    return select


def view_lineage(definition: str, catalog: Catalog) -> list[Lineage]:
    """The lineage of each output column of a view, in order."""
    return [lineage for _, lineage in _Analyzer(catalog).select(parse_definition(definition))]


def referenced_columns(definition: str, catalog: Catalog) -> Lineage | None:
    """Every column of every relation a definition names: the fallback when `view_lineage`
    fails. Opaque, and it covers the whole definition, so nothing it uses can be missed.
    None when the definition does not even parse."""
    try:
        tree: Any = json.loads(parse_sql_json(definition))
    except ParseError:
        return None
    sources: set[ColumnKey] = set()
    for range_var in _find_all(tree, "RangeVar"):
        schema, name = range_var.get("schemaname"), range_var.get("relname")
        relation = catalog.find(str(schema), str(name)) if schema and name else None
        if relation is not None:
            sources.update((c.table_oid, c.attnum) for c in catalog.columns_of(relation.oid))
    return Lineage(None, frozenset(sources), opaque=True)


def _find_all(node: Any, kind: str) -> Iterator[Node]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == kind and isinstance(value, dict):
                yield value
            yield from _find_all(value, kind)
    elif isinstance(node, list):
        for item in node:
            yield from _find_all(item, kind)


class _Analyzer:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    # -- queries -----------------------------------------------------------------------------

    def select(self, node: Node, outer: Scope | None = None) -> list[OutputColumn]:
        scope = Scope(parent=outer)
        with_clause = node.get("withClause")
        if isinstance(with_clause, dict):
            self._with(with_clause, scope)
        op = node.get("op", "SETOP_NONE")
        if op != "SETOP_NONE":
            left = self.select(_select_body(node.get("larg")), scope)
            right = self.select(_select_body(node.get("rarg")), scope)
            if len(left) != len(right):
                raise LineageUnresolved("set operation arms differ in width")
            return [(name, merge((a, b))) for (name, a), (_, b) in zip(left, right, strict=True)]
        values = node.get("valuesLists")
        if isinstance(values, list):
            return self._values(values, scope)
        for item in node.get("fromClause", []):
            scope.relations.extend(self._from_item(item, scope))
        out: list[OutputColumn] = []
        for item in node.get("targetList", []):
            target = body_of(item, "ResTarget")
            if target is None:
                raise LineageUnresolved("unexpected target list entry")
            out.extend(self._target(target, scope))
        return out

    def _values(self, rows: list[Any], scope: Scope) -> list[OutputColumn]:
        columns: list[list[Lineage]] = []
        for row in rows:
            row_body = body_of(row, "List")
            items = row_body.get("items", []) if row_body is not None else []
            if columns and len(items) != len(columns):
                raise LineageUnresolved("VALUES rows differ in width")
            if not columns:
                columns = [[] for _ in items]
            for index, item in enumerate(items):
                columns[index].append(self.expression(item, scope))
        return [(f"column{index + 1}", compute(parts)) for index, parts in enumerate(columns)]

    def _with(self, with_clause: Node, scope: Scope) -> None:
        recursive = bool(with_clause.get("recursive"))
        for item in with_clause.get("ctes", []):
            cte = body_of(item, "CommonTableExpr")
            if cte is None:
                raise LineageUnresolved("unexpected WITH entry")
            name = str(cte.get("ctename", ""))
            query = _select_body(cte.get("ctequery"))
            aliases = strings(cte.get("aliascolnames"))
            if recursive:
                columns = self._recursive_cte(name, query, aliases, scope)
            else:
                columns = rename(self.select(query, scope), aliases)
            scope.ctes[name] = columns

    def _recursive_cte(
        self, name: str, query: Node, aliases: list[str], scope: Scope
    ) -> list[OutputColumn]:
        # The CTE reads itself: feed each pass's result back until no column gains a source.
        # Sources only grow, so this settles; the result is never a plain reference.
        current: list[OutputColumn] = [(alias, CONSTANT) for alias in aliases]
        for _ in range(_MAX_RECURSIVE_PASSES):
            scope.ctes[name] = current
            result = rename(self.select(query, scope), aliases)
            previous = current or [(column, CONSTANT) for column, _ in result]
            if len(result) != len(previous):
                raise LineageUnresolved("recursive CTE column list does not match its query")
            grown = [
                (column, compute((lineage, before)))
                for (column, lineage), (_, before) in zip(result, previous, strict=True)
            ]
            if grown == current:
                return grown
            current = grown
        raise LineageUnresolved("recursive CTE did not settle")

    # -- FROM --------------------------------------------------------------------------------

    def _from_item(self, item: Any, scope: Scope) -> list[RangeEntry]:
        if not isinstance(item, dict) or len(item) != 1:
            raise LineageUnresolved("unexpected FROM entry")
        kind, body = next(iter(item.items()))
        if kind == "RangeVar":
            return [self._range_var(body, scope)]
        if kind == "RangeSubselect":
            columns = self.select(_select_body(body.get("subquery")), scope)
            return [aliased(body.get("alias"), None, columns)]
        if kind == "JoinExpr":
            return self._join(body, scope)
        if kind == "RangeTableSample":
            return self._from_item(body.get("relation"), scope)
        if kind == "RangeFunction":
            return [self._function_relation(body, scope)]
        # XMLTABLE, JSON_TABLE and anything newer: a function-like source of unknown columns.
        lineage = Lineage(None, self.expression(body, scope).sources, opaque=True)
        return [aliased(body.get("alias"), None, [], complete=False, rest=lineage)]

    def _range_var(self, body: Node, scope: Scope) -> RangeEntry:
        schema = body.get("schemaname")
        name = str(body.get("relname", ""))
        alias = body.get("alias")
        if not schema:
            cte = scope.cte(name)
            if cte is not None:
                return aliased(alias, name, cte)
        relation = self.catalog.find(str(schema or "pg_catalog"), name)
        if relation is None:
            # A system catalog or a relation the catalog does not hold: unknown columns.
            found = aliased(alias, name, [], complete=False, rest=UNKNOWN)
        else:
            columns = [
                (column.column, Lineage.of_column((column.table_oid, column.attnum)))
                for column in self.catalog.columns_of(relation.oid)
            ]
            found = aliased(alias, name, columns)
        found.schema = str(schema) if schema else "pg_catalog"
        found.relname = name
        return found

    def _function_relation(self, body: Node, scope: Scope) -> RangeEntry:
        # The columns of a function's result are unknown here (a composite's fields, a
        # column definition list): any name resolves to everything its arguments read.
        parts: list[Lineage] = []
        names: list[str] = []
        call_name: str | None = None
        for entry in body.get("functions", []):
            items = list_items(entry)
            if not items:
                continue
            parts.append(self.expression(items[0], scope))
            call_name = call_name or _figure_name(items[0])
            for extra in items[1:]:
                for column in list_items(extra):
                    column_def = body_of(column, "ColumnDef")
                    if column_def is not None:
                        names.append(str(column_def.get("colname", "")))
        lineage = Lineage(None, compute(parts).sources, opaque=True)
        columns = [(name, lineage) for name in names]
        return aliased(body.get("alias"), call_name, columns, complete=False, rest=lineage)

    def _join(self, body: Node, scope: Scope) -> list[RangeEntry]:
        left = self._from_item(body.get("larg"), scope)
        # LATERAL on the right side may read the left side.
        beside = Scope(relations=[*scope.relations, *left], ctes=scope.ctes, parent=scope.parent)
        right = self._from_item(body.get("rarg"), beside)
        alias = body.get("alias")
        if not isinstance(alias, dict):
            return [*left, *right]
        using = strings(body.get("usingClause"))
        if body.get("isNatural"):
            left_names = {name for relation in left for name, _ in relation.columns}
            using = [
                name
                for relation in right
                for name, _ in relation.columns
                if name in left_names and name not in using
            ]
        columns: list[OutputColumn] = []
        for name in using:
            found = [
                lineage
                for relation in (*left, *right)
                if (lineage := relation.column(name)) is not None
            ]
            columns.append((name, merge(found)))
        complete = True
        rest_parts: list[Lineage] = []
        for relation in (*left, *right):
            columns.extend(column for column in relation.columns if column[0] not in using)
            if not relation.complete:
                complete = False
                rest_parts.append(relation.rest)
        rest = Lineage(None, compute(rest_parts).sources, opaque=True)
        return [aliased(alias, None, columns, complete=complete, rest=rest)]

    # -- target list and expressions ---------------------------------------------------------

    def _target(self, target: Node, scope: Scope) -> list[OutputColumn]:
        value = target.get("val")
        column_ref = body_of(value, "ColumnRef")
        if column_ref is not None:
            fields = column_ref.get("fields", [])
            if any(isinstance(f, dict) and "A_Star" in f for f in fields):
                return self._expand_star(strings(fields), scope)
            lineage = self.column(fields, scope)
        else:
            lineage = self.expression(value, scope)
        return [(str(target.get("name") or _figure_name(value)), lineage)]

    def _expand_star(self, qualifier: list[str], scope: Scope) -> list[OutputColumn]:
        if qualifier:
            relation = find_relation(qualifier, scope)
            relations = [relation] if relation is not None else []
        else:
            relations = scope.relations
        if not relations or not all(relation.complete for relation in relations):
            raise LineageUnresolved("* over a relation whose columns are unknown")
        return [column for relation in relations for column in relation.columns]

    def expression(self, node: Any, scope: Scope) -> Lineage:
        """What a computed value may carry: every column it reads (never a plain reference)."""
        parts: list[Lineage] = []
        self._collect(node, scope, parts)
        return compute(parts)

    def _collect(self, node: Any, scope: Scope, parts: list[Lineage]) -> None:
        if isinstance(node, list):
            for item in node:
                self._collect(item, scope, parts)
            return
        if not isinstance(node, dict):
            return
        for kind, body in node.items():
            if isinstance(body, list):
                self._collect(body, scope, parts)
            elif not isinstance(body, dict) or kind == "NullTest":
                continue
            elif kind == "ColumnRef":
                parts.append(self.column(body.get("fields", []), scope))
            elif kind == "SubLink":
                self._sublink(body, scope, parts)
            elif kind == "FuncCall":
                if tuple(strings(body.get("funcname"))) not in _VALUELESS_FUNCTIONS:
                    self._collect(body, scope, parts)
            elif kind == "SelectStmt":
                parts.extend(lineage for _, lineage in self.select(body, scope))
            elif kind == "RangeSubselect":
                subquery = _select_body(body.get("subquery"))
                parts.extend(lineage for _, lineage in self.select(subquery, scope))
            else:
                self._collect(body, scope, parts)

    def _sublink(self, body: Node, scope: Scope, parts: list[Lineage]) -> None:
        if body.get("subLinkType") == "EXISTS_SUBLINK":
            return
        self._collect(body.get("testexpr"), scope, parts)
        columns = self.select(_select_body(body.get("subselect")), scope)
        parts.extend(lineage for _, lineage in columns)

    def column(self, fields: list[Any], scope: Scope) -> Lineage:
        """A column reference as written: `email`, `c.email`, `public.customers.email`, `c.*`."""
        names = strings(fields)
        star = any(isinstance(f, dict) and "A_Star" in f for f in fields)
        if star:
            relation = find_relation(names, scope) if names else None
            if relation is not None:
                return relation.whole_row()
            if not names:
                return compute(relation.whole_row() for relation in scope.relations)
            return scope.everything()
        if len(names) == 1:
            return self._unqualified(names[0], scope)
        for width in (1, 2, 3):
            if len(names) <= width:
                break
            relation = find_relation(names[:width], scope)
            if relation is not None:
                lineage = relation.column(names[width])
                if lineage is None:  # `c.f` may call f(c): the whole row goes in
                    return relation.whole_row()
                return lineage if len(names) == width + 1 else lineage.derived()
        # Not a relation: a field of a composite column, `(addr).street` written `addr.street`.
        return self._unqualified(names[0], scope).derived()

    def _unqualified(self, name: str, scope: Scope) -> Lineage:
        # As PostgreSQL resolves it: a column of this level, else a whole row of this level,
        # else the enclosing level. A relation whose columns are unknown might hold the name,
        # so its columns join the candidates instead of ending the search.
        candidates: list[Lineage] = []
        for level in scope.chain():
            named = [
                lineage
                for relation in level.relations
                if relation.complete and (lineage := relation.column(name)) is not None
            ]
            if named:
                candidates.append(merge(named))
                break
            unknown = [relation.rest for relation in level.relations if not relation.complete]
            rows = [r.whole_row() for r in level.relations if r.refname == name]
            candidates.extend((*unknown, *rows))
            if rows and not unknown:
                break
        if not candidates:
            return scope.everything()
        if len(candidates) == 1:
            return candidates[0]
        return Lineage(None, compute(candidates).sources, opaque=True)


def _select_body(node: Any) -> Node:
    """A SelectStmt whether wrapped (`{"SelectStmt": {...}}`) or not (set operation arms)."""
    body = body_of(node, "SelectStmt")
    if body is not None:
        return body
    if isinstance(node, dict) and ("targetList" in node or "op" in node or "valuesLists" in node):
        return node
    raise LineageUnresolved("expected a SELECT")


def _figure_name(node: Any) -> str:
    """The name PostgreSQL gives an unnamed output column (FigureColname), for the shapes that
    matter here; a wrong guess only makes later references fall back to the whole relation."""
    if not isinstance(node, dict) or len(node) != 1:
        return "?column?"
    kind, body = next(iter(node.items()))
    if not isinstance(body, dict):
        return "?column?"
    if kind == "ColumnRef":
        names = strings(body.get("fields"))
        return names[-1] if names else "?column?"
    if kind == "FuncCall":
        names = strings(body.get("funcname"))
        return names[-1] if names else "?column?"
    if kind == "TypeCast":
        inner = _figure_name(body.get("arg"))
        if inner != "?column?":
            return inner
        type_names = strings((body.get("typeName") or {}).get("names"))
        return type_names[-1] if type_names else "?column?"
    if kind == "A_Indirection":
        names = strings(body.get("indirection"))
        return names[-1] if names else _figure_name(body.get("arg"))
    if kind == "CollateClause":
        return _figure_name(body.get("arg"))
    if kind == "SubLink":
        link = body.get("subLinkType")
        if link == "EXISTS_SUBLINK":
            return "exists"
        if link == "ARRAY_SUBLINK":
            return "array"
        if link == "EXPR_SUBLINK":
            select = body_of(body.get("subselect"), "SelectStmt") or {}
            targets = select.get("targetList") or []
            target = body_of(targets[0], "ResTarget") if targets else None
            if target is not None:
                return str(target.get("name") or _figure_name(target.get("val")))
        return "?column?"
    simple = {
        "CaseExpr": "case",
        "A_ArrayExpr": "array",
        "RowExpr": "row",
        "CoalesceExpr": "coalesce",
        "GroupingFunc": "grouping",
    }
    if kind in simple:
        return simple[kind]
    if kind == "MinMaxExpr":
        return "greatest" if body.get("op") == "IS_GREATEST" else "least"
    if kind == "A_Expr" and body.get("kind") == "AEXPR_NULLIF":
        return "nullif"
    return "?column?"

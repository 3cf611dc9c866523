"""The walk over one statement's parse tree that gathers what a StatementInfo reports.

`Collector` owns the query-level machinery shared by every statement: SELECT with its WITH,
FROM, set operations and clauses; expressions, column references and function calls; nested
statements. Statement-specific handlers (dml, ddl, utility, copy, plpgsql) are plain functions
`handler(collector, body, scope)` looked up by node type.

Unknown nodes are never skipped: the walk descends into every field it does not recognize, so
a relation or function call hiding in a new kind of node is still reported (fail closed).

The same walk finds the inference columns (see `bastion.sql.inference`): `infer` holds the
clause under which every column met is one (inside ORDER BY, GROUP BY, a window, a non-trivial
condition), None where columns are only read (the select list, VALUES, RETURNING).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from bastion.sql import columns, flags
from bastion.sql.columns import GROUP, HAVING, JOIN, ORDER, OTHER, PROJECTION, VALUES, WHERE, WINDOW
from bastion.sql.functions import call_facts, function_name
from bastion.sql.inference import (
    harmless_condition,
    harmless_simple_case,
    is_bare_column,
    output_name,
    output_positions,
    unqualified_name,
)
from bastion.sql.kinds import OTHER as OTHER_KIND
from bastion.sql.kinds import UNKNOWN, classify, is_statement
from bastion.sql.outputs import statement_outputs
from bastion.sql.relations import (
    Relation,
    Scope,
    alias_name,
    table_from_range_var,
)
from bastion.sql.statement import ColumnRef, CopyInfo, OutputColumn, StatementInfo, TableRef
from bastion.sql.walker import Node, body_of, list_items, strings, unwrap

AnalyzeText = Callable[[str], tuple[StatementInfo, ...]]
Handler = Callable[["Collector", Node, Scope | None], None]

# Node types that can hold nothing the analysis reports.
_LEAVES = frozenset(
    {
        "A_Const",
        "ParamRef",
        "String",
        "Integer",
        "Float",
        "Boolean",
        "BitString",
        "A_Star",
        "TypeName",
        "SQLValueFunction",
        "RoleSpec",
        "SetToDefault",
        "CurrentOfExpr",
        "MergeSupportFunc",
    }
)


class Collector:
    """Accumulates tables, columns, functions and flags for one statement."""

    __slots__ = (
        "analyze_text",
        "columns",
        "copy",
        "dynamic_sql",
        "fingerprint",
        "flags",
        "functions",
        "handlers",
        "has_where",
        "infer",
        "inference",
        "inner",
        "modifying_cte",
        "moves_data",
        "normalized",
        "outputs",
        "reads",
        "subqueries",
        "text",
        "where_always_true",
        "writes",
    )

    def __init__(
        self,
        text: str,
        normalized: str,
        fingerprint: str,
        analyze_text: AnalyzeText,
        handlers: Mapping[str, Handler],
    ) -> None:
        self.text = text
        self.normalized = normalized
        self.fingerprint = fingerprint
        self.analyze_text = analyze_text
        self.handlers = handlers
        self.reads: dict[TableRef, None] = {}
        self.writes: dict[TableRef, None] = {}
        self.columns: dict[ColumnRef, None] = {}
        self.functions: dict[str, None] = {}
        self.flags: set[str] = set()
        self.inner: list[StatementInfo] = []
        self.modifying_cte = False
        self.dynamic_sql = False
        self.has_where: bool | None = None
        self.where_always_true = False
        self.copy: CopyInfo | None = None
        self.inference: dict[ColumnRef, None] = {}
        self.infer: str | None = None
        self.moves_data = False
        self.subqueries = 0  # SubLinks walked so far (INSERT ... VALUES ((SELECT ...)))
        self.outputs: tuple[OutputColumn, ...] | None = None

    # -- results -----------------------------------------------------------------------------

    def read(self, table: TableRef) -> None:
        self.reads[table] = None

    def write(self, table: TableRef) -> None:
        self.writes[table] = None

    def column(self, name: str, clause: str, table: TableRef | None = None) -> None:
        self.columns[ColumnRef(name=name, clause=clause, table=table)] = None

    def inference_column(self, name: str, clause: str, table: TableRef | None = None) -> None:
        self.inference[ColumnRef(name=name, clause=clause, table=table)] = None

    def build(self, kind: str, object_type: str | None) -> StatementInfo:
        if self.dynamic_sql:
            self.flags.add(flags.DYNAMIC_SQL)
        return StatementInfo(
            kind=kind,
            text=self.text,
            normalized=self.normalized,
            fingerprint=self.fingerprint,
            object_type=object_type,
            tables_read=tuple(self.reads),
            tables_written=tuple(self.writes),
            columns=tuple(self.columns),
            functions=tuple(self.functions),
            has_where=self.has_where,
            where_always_true=self.where_always_true,
            modifying_cte=self.modifying_cte,
            copy=self.copy,
            dynamic_sql=self.dynamic_sql,
            flags=frozenset(self.flags),
            inner=tuple(self.inner),
            inference_columns=tuple(self.inference),
            moves_data=self.moves_data,
            outputs=self.outputs,
        )

    def absorb(self, info: StatementInfo, with_columns: bool) -> None:
        """Make an inner statement's facts the outer statement's too, so that a policy reading
        only the outer statement still sees what the inner one touches."""
        for table in info.tables_read:
            self.reads[table] = None
        for table in info.tables_written:
            self.writes[table] = None
        for name in info.functions:
            self.functions[name] = None
        if with_columns:
            for ref in info.columns:
                self.columns[ref] = None
        # Unlike `columns`, folded from code bodies too: a PL/pgSQL condition is not an inner
        # statement, and a variable mistaken for a column only errs towards refusing.
        for ref in info.inference_columns:
            self.inference[ref] = None
        self.moves_data = self.moves_data or info.moves_data
        self.flags |= info.flags
        self.dynamic_sql = self.dynamic_sql or info.dynamic_sql
        self.modifying_cte = self.modifying_cte or info.modifying_cte

    def add_inner(self, info: StatementInfo, with_columns: bool = True) -> None:
        self.inner.append(info)
        self.absorb(info, with_columns)

    def unanalyzable(self) -> None:
        """Code Bastion cannot read: assume it can do anything."""
        self.flags.add(flags.UNANALYZABLE_BODY)
        self.dynamic_sql = True

    # -- statements --------------------------------------------------------------------------

    def statement(self, node: Node, scope: Scope | None = None) -> tuple[str, str | None]:
        """Walk one statement node; return its (kind, object_type)."""
        unwrapped = unwrap(node)
        if unwrapped is None:
            self.flags.add(flags.UNCLASSIFIED)
            self.expr(node, OTHER, scope)
            return OTHER_KIND, None
        node_type, body = unwrapped
        kind, object_type = classify(node_type, body)
        if kind == OTHER_KIND:
            self.flags.add(flags.UNCLASSIFIED)
        handler = self.handlers.get(node_type)
        if handler is not None:
            handler(self, body, scope)
        else:
            self.walk_fields(body, OTHER, scope)
        # A pass of its own over the select list (bastion.sql.outputs): cheap, and it keeps
        # per-column lineage out of the walk every statement's analysis goes through.
        self.outputs = statement_outputs(node_type, body)
        return kind, object_type

    def sub_statement(self, node: Node, scope: Scope | None) -> StatementInfo:
        """A statement nested in this one's tree (a data-modifying CTE, a rule action, ...):
        analyzed on its own, listed in `inner`, and folded into this statement."""
        child = Collector(
            self.text, self.normalized, self.fingerprint, self.analyze_text, self.handlers
        )
        kind, object_type = child.statement(node, scope)
        info = child.build(kind, object_type)
        self.add_inner(info)
        return info

    def sql_text(self, sql: str, as_inner: bool = True) -> tuple[StatementInfo, ...]:
        """Analyze SQL found as text (a function body, a literal given to EXECUTE): each
        statement is folded into this one and, when `as_inner`, listed in `inner`."""
        infos = self.analyze_text(sql)
        for info in infos:
            if info.kind == UNKNOWN:
                continue
            if as_inner:
                self.add_inner(info, with_columns=False)
            else:
                self.absorb(info, with_columns=False)
        return infos

    # -- SELECT ------------------------------------------------------------------------------

    def select(
        self, body: Node, parent: Scope | None, ordered: dict[int, str] | None = None
    ) -> Scope:
        """Walk a SELECT (or VALUES, or set operation). `ordered` maps select-list positions
        an enclosing set operation's ORDER BY names to the inference clause they get."""
        scope = Scope(parent=parent)
        with_clause = body.get("withClause")
        if isinstance(with_clause, dict):
            self.with_clause(with_clause, scope)
        sort = body.get("sortClause")
        if body.get("op", "SETOP_NONE") != "SETOP_NONE":
            if sort:  # ORDER BY 1 or ORDER BY x after a UNION orders every arm's column
                ordered = dict(ordered or {})
                output_positions(_leftmost_targets(body), sort, ORDER, ordered)
            for arm in ("larg", "rarg"):
                arm_body = body.get(arm)
                if isinstance(arm_body, dict):
                    self.select(arm_body, scope, ordered)
            outputs = {output_name(target) for target in _leftmost_targets(body)} if sort else ()
            self._order_and_limit(body, scope, outputs)
            return scope
        into = body.get("intoClause")
        if isinstance(into, dict):
            self.moves_data = True
            if isinstance(into.get("rel"), dict):
                self.write(table_from_range_var(into["rel"]))
        values = body.get("valuesLists")
        if values:
            self.expr(values, VALUES, scope)
        for item in body.get("fromClause") or ():
            self.from_item(item, scope)
        targets = body.get("targetList") or []
        group = body.get("groupClause")
        distinct = body.get("distinctClause")
        if targets and (sort or group or distinct):
            # Entries named by number or alias are ordered or grouped by, not only shown.
            ordered = dict(ordered or {})
            for items, clause in ((sort, ORDER), (group, GROUP), (distinct, GROUP)):
                if items:
                    output_positions(targets, items, clause, ordered)
        for position, target in enumerate(targets):
            res = body_of(target, "ResTarget")
            if res is None:
                self.expr(target, PROJECTION, scope)
                continue
            if res.get("name"):
                scope.output_names.add(str(res["name"]))
            label = ordered.get(position) if ordered else None
            if label is None:
                self.expr(res.get("val"), PROJECTION, scope)
            else:
                self.reveal(res.get("val"), PROJECTION, scope, label)
        self.condition(body.get("whereClause"), WHERE, scope)
        self.reveal(group, GROUP, scope, GROUP)
        self.condition(body.get("havingClause"), HAVING, scope)
        for window in body.get("windowClause") or ():
            window_body = body_of(window, "WindowDef")
            if window_body is not None:
                self.window(window_body, scope)
        self.reveal(distinct, OTHER, scope, GROUP)  # DISTINCT ON (...); plain DISTINCT is [{}]
        self._order_and_limit(body, scope, scope.output_names)
        # lockingClause (FOR UPDATE OF a, b) names aliases already in FROM: nothing new.
        return scope

    def _order_and_limit(self, body: Node, scope: Scope, outputs: Collection[str | None]) -> None:
        """ORDER BY (every column in it reveals values), LIMIT and OFFSET. `outputs` are the
        output names an unqualified ORDER BY name refers to before any input column."""
        for item in body.get("sortClause") or ():
            sort_by = body_of(item, "SortBy")
            name = unqualified_name(sort_by.get("node")) if sort_by is not None else None
            if name is not None and name in outputs:
                # ORDER BY an output name: select() walked that entry as ordered.
                self.expr(item, ORDER, scope)
                continue
            self.reveal(item, ORDER, scope, ORDER)
        self.expr(body.get("limitCount"), OTHER, scope)
        self.expr(body.get("limitOffset"), OTHER, scope)

    def window(self, window: Node, scope: Scope | None) -> None:
        saved = self.infer
        self.infer = WINDOW
        self.expr(window.get("partitionClause"), WINDOW, scope)
        self.expr(window.get("orderClause"), WINDOW, scope)
        self.expr(window.get("startOffset"), WINDOW, scope)
        self.expr(window.get("endOffset"), WINDOW, scope)
        self.infer = saved

    def with_clause(self, with_clause: Node, scope: Scope) -> None:
        ctes = [body_of(cte, "CommonTableExpr") for cte in with_clause.get("ctes") or ()]
        if with_clause.get("recursive"):
            # WITH RECURSIVE: every name in the list is visible to every member, itself too.
            for cte in ctes:
                if cte is not None:
                    scope.ctes.add(str(cte.get("ctename", "")))
        for cte in ctes:
            if cte is None:
                continue
            query = cte.get("ctequery")
            query_type = unwrap(query) if isinstance(query, dict) else None
            if query_type is not None and query_type[0] == "SelectStmt":
                self.select(query_type[1], scope)
            elif isinstance(query, dict):
                if query_type is not None and query_type[0] in (
                    "InsertStmt",
                    "UpdateStmt",
                    "DeleteStmt",
                    "MergeStmt",
                ):
                    self.modifying_cte = True
                self.sub_statement(query, scope)
            # A plain WITH's member sees only the members before it.
            scope.ctes.add(str(cte.get("ctename", "")))

    # -- FROM --------------------------------------------------------------------------------

    def from_item(self, item: Any, scope: Scope) -> list[Relation]:
        """Walk one FROM item, add the relations it brings into `scope`, return them."""
        unwrapped = unwrap(item) if isinstance(item, dict) else None
        if unwrapped is None:
            self.expr(item, OTHER, scope)
            return []
        node_type, body = unwrapped
        if node_type == "RangeVar":
            relation = self.range_var(body, scope)
        elif node_type == "JoinExpr":
            return self._join(body, scope)
        elif node_type == "RangeSubselect":
            self.expr(body.get("subquery"), OTHER, scope)
            relation = Relation(alias_name(body) or "", None, aliased=True)
        elif node_type == "RangeFunction":
            relation = self._range_function(body, scope)
        elif node_type == "RangeTableSample":
            sampled = self.from_item(body.get("relation"), scope)
            self.expr(body.get("args"), OTHER, scope)
            self.expr(body.get("repeatable"), OTHER, scope)
            return sampled
        else:  # RangeTableFunc (XMLTABLE), JsonTable, and anything newer
            self.walk_fields(body, OTHER, scope, skip=("alias",))
            relation = Relation(alias_name(body) or "", None, aliased=True)
        scope.relations.append(relation)
        return [relation]

    def range_var(self, body: Node, scope: Scope | None) -> Relation:
        """A relation named in FROM: a CTE when an unqualified name matches one in scope,
        else a table, which is reported as read."""
        alias = alias_name(body)
        name = str(body.get("relname", ""))
        qualified = bool(body.get("schemaname") or body.get("catalogname"))
        if not qualified and scope is not None and scope.is_cte(name):
            return Relation(alias or name, None, aliased=alias is not None)
        table = table_from_range_var(body)
        self.read(table)
        return Relation(alias or table.name, table, aliased=alias is not None)

    def _join(self, body: Node, scope: Scope) -> list[Relation]:
        left = self.from_item(body.get("larg"), scope)
        right = self.from_item(body.get("rarg"), scope)
        for name in strings(body.get("usingClause")):
            for side in (left, right):
                table = side[0].table if len(side) == 1 else None
                self.column(name, JOIN, table)
                self.inference_column(name, JOIN, table)  # a column compared with a column
        if body.get("isNatural"):
            # The columns compared are the ones both sides share: unknown without a catalog.
            for relation in left + right:
                self.inference_column(columns.STAR, JOIN, relation.table)
        self.condition(body.get("quals"), JOIN, scope)
        alias = alias_name(body)
        if alias:
            scope.relations.append(Relation(alias, None, aliased=True, qualified_only=True))
        return left + right

    def _range_function(self, body: Node, scope: Scope) -> Relation:
        name = ""
        for entry in body.get("functions") or ():
            items = list_items(entry)
            if items:
                self.expr(items[0], OTHER, scope)
                call = body_of(items[0], "FuncCall")
                if call is not None and not name:
                    name = function_name(call)[1]
        alias = alias_name(body)
        return Relation(alias or name, None, aliased=True)

    # -- expressions -------------------------------------------------------------------------

    def expr(self, value: Any, clause: str, scope: Scope | None) -> None:
        """Walk an expression (or any part of a tree) for columns, functions, subqueries,
        relations and nested statements."""
        # The hot path of analysis: plain type checks and one dict lookup per node.
        kind = type(value)
        if kind is list:
            for item in value:
                if type(item) is dict or type(item) is list:
                    self.expr(item, clause, scope)
            return
        if kind is not dict:
            return
        if len(value) == 1:
            ((node_type, body),) = value.items()
            if node_type in _LEAVES:
                return
            visit = _VISITORS.get(node_type)
            if visit is not None:
                visit(self, body, clause, scope)
                return
            if type(body) is dict and node_type[:1].isupper():
                if is_statement(node_type):
                    self.sub_statement(value, scope)
                else:
                    self.walk_fields(body, clause, scope)
                return
        if "relname" in value:  # an unwrapped RangeVar in a field not handled elsewhere
            self.read(table_from_range_var(value))
            return
        self.walk_fields(value, clause, scope)

    def _column_ref(self, body: Node, clause: str, scope: Scope | None) -> None:
        refs = columns.resolve(body.get("fields", ()), clause, scope)
        for ref in refs:
            self.columns[ref] = None
        label = self.infer
        if label is not None:
            for ref in refs:
                if ref.clause != label:
                    ref = ColumnRef(name=ref.name, clause=label, table=ref.table)
                self.inference[ref] = None

    def _sub_link(self, body: Node, clause: str, scope: Scope | None) -> None:
        self.subqueries += 1
        self.expr(body.get("testexpr"), clause, scope)
        if body.get("subLinkType") == "EXISTS_SUBLINK" and self.infer is not None:
            # EXISTS looks at whether rows come back, never at what its select list holds.
            saved = self.infer
            self.infer = None
            self.expr(body.get("subselect"), OTHER, scope)
            self.infer = saved
        else:
            self.expr(body.get("subselect"), OTHER, scope)

    def _case(self, body: Node, clause: str, scope: Scope | None) -> None:
        """CASE: its WHEN conditions decide which value each row shows, so they are
        conditions wherever the CASE is (in the select list above all)."""
        if self.infer is not None:  # already inside ORDER BY, a condition...: all of it counts
            self.walk_fields(body, clause, scope)
            return
        arg = body.get("arg")
        harmless = arg is not None and harmless_simple_case(body)
        if arg is not None:  # CASE x WHEN v ...: x = v for each v
            self.reveal(arg, clause, scope, None if harmless else clause)
        for when in body.get("args") or ():
            case_when = body_of(when, "CaseWhen")
            if case_when is None:
                self.expr(when, clause, scope)
                continue
            if arg is None:
                self.condition(case_when.get("expr"), clause, scope)
            else:
                self.reveal(case_when.get("expr"), clause, scope, None if harmless else clause)
            self.walk_fields(case_when, clause, scope, skip=("expr",))
        self.walk_fields(body, clause, scope, skip=("arg", "args"))

    def reveal(self, value: Any, clause: str, scope: Scope | None, label: str | None) -> None:
        """Walk `value` with every column in it an inference column under `label` (ORDER BY,
        GROUP BY, ...), or with none when `label` is None."""
        if value is None:
            return
        saved = self.infer
        self.infer = label
        self.expr(value, clause, scope)
        self.infer = saved

    def condition(self, value: Any, clause: str, scope: Scope | None) -> None:
        """Walk a condition (WHERE, JOIN ON, HAVING, a CASE's WHEN, FILTER): every column in
        it is an inference column except in the harmless forms `bastion.sql.inference` lists,
        looked for at the top and under AND, OR, NOT and IS TRUE."""
        if value is None:
            return
        saved = self.infer
        self._condition(value, clause, scope)
        self.infer = saved

    def _condition(self, value: Any, clause: str, scope: Scope | None) -> None:
        if type(value) is dict and len(value) == 1:
            ((node_type, body),) = value.items()
            if node_type == "BoolExpr":
                for arg in body.get("args") or ():
                    self._condition(arg, clause, scope)
                return
            if node_type == "BooleanTest" and not is_bare_column(body.get("arg")):
                self._condition(body.get("arg"), clause, scope)
                return
            if harmless_condition(node_type, body) or (
                node_type == "ColumnRef" and is_bare_column(value)  # WHERE active
            ):
                self.infer = None
                self.expr(value, clause, scope)
                return
        self.infer = clause
        self.expr(value, clause, scope)

    def _select_node(self, body: Node, clause: str, scope: Scope | None) -> None:
        self.select(body, scope)

    def _range_var_node(self, body: Node, clause: str, scope: Scope | None) -> None:
        self.range_var(body, scope)

    def walk_fields(
        self, body: Node, clause: str, scope: Scope | None, skip: tuple[str, ...] = ()
    ) -> None:
        for key, child in body.items():
            if (type(child) is dict or type(child) is list) and key not in skip:
                self.expr(child, clause, scope)

    def func_call(self, body: Node, clause: str, scope: Scope | None) -> None:
        name, base = function_name(body)
        if name:
            self.functions[name] = None
        args = body.get("args") or []
        facts = call_facts(base, args)
        if facts is not None:
            self.flags |= facts.flags
            self.dynamic_sql = self.dynamic_sql or facts.dynamic_sql
            for literal in facts.sql_literals:
                self.sql_text(literal)
        self.expr(args, clause, scope)
        self.reveal(body.get("agg_order"), clause, scope, ORDER)  # array_agg(x ORDER BY ssn)
        agg_filter = body.get("agg_filter")
        if agg_filter is not None:
            if self.infer is None:
                self.condition(agg_filter, clause, scope)
            else:
                self.expr(agg_filter, clause, scope)
        over = body.get("over")
        if isinstance(over, dict):
            self.window(over, scope)


_VISITORS: dict[str, Callable[[Collector, Node, str, Scope | None], None]] = {
    "ColumnRef": Collector._column_ref,
    "FuncCall": Collector.func_call,
    "SubLink": Collector._sub_link,
    "CaseExpr": Collector._case,
    "SelectStmt": Collector._select_node,
    "RangeVar": Collector._range_var_node,
}


def _leftmost_targets(body: Node) -> list[Any]:
    """The select list that names a set operation's output columns: its first arm's."""
    while body.get("op", "SETOP_NONE") != "SETOP_NONE":
        left = body.get("larg")
        if not isinstance(left, dict):
            return []
        body = left
    targets = body.get("targetList")
    return targets if isinstance(targets, list) else []

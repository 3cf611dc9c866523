"""ResultMaskPlanner: the pipeline's mask planner over live per-target classifications.

Each target has a source of column classifications (a catalog cache, loaded from the server's
catalog and refreshed on a TTL or after DDL). For every result, each output column that names
its origin (table OID, attribute number) takes that column's classification. A column with no
origin (an expression, a function result) has its content scanned when its type can hold text;
so has a column of a system catalog or view (pg_catalog, information_schema).
A column whose origin is unknown fails closed: before the catalog has loaded, or for a table the
snapshot does not have yet (created since), a text column is scanned and any other column is
masked with a type-valid placeholder; an unknown table also asks the source to reload.

A computed column (no origin) is masked like the strictest sensitive column its own expression
reads, when the statement's outputs line up with the result's columns; when they do not, or an
output's lineage is not fully known, like the strictest column the statement's projection reads.

`COPY ... TO STDOUT` results have no RowDescription: `plan_copy` takes their columns from the
statement and the catalog (see bastion.masking.copy_out) and plans them the same way.

Plans are cached per (target, snapshot, result shape): the same query asked again costs a dict
lookup, and a result with no column needing work costs nothing per row.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Protocol

from bastion.errors import ProtocolViolation
from bastion.masking import pgtypes
from bastion.masking.classes import SensitiveClass, Strategy
from bastion.masking.classifier import Action, Classification
from bastion.masking.copy_out import (
    CopyColumn,
    CopyOutRewriter,
    TableFinder,
    computed_outputs,
    copy_columns,
    copy_format,
    decode_copy_response,
)
from bastion.masking.plan import MaskPlanBuilder, RowMaskPlan
from bastion.masking.planner import OriginColumn
from bastion.sql.statement import ColumnRef, OutputColumn, StatementInfo, TableRef

_NO_ORIGIN_TEXT = Classification.scanned("no origin: content scan")
_NO_ORIGIN_OTHER = Classification.passing("no origin; the type cannot hold text")
_UNKNOWN_TEXT = Classification.scanned("origin not in the catalog yet: content scan")
_UNKNOWN_OTHER = Classification.masked(
    SensitiveClass.SECRET, Strategy.REDACT, "origin not in the catalog yet: withheld"
)
_SYSTEM_TEXT = Classification.scanned("system catalog: content scan")
_SYSTEM_OTHER = Classification.passing("system catalog; the type cannot hold text")
_CACHE_LIMIT = 4096
# Clauses whose column references can flow into a computed output column.
_OUTPUT_CLAUSES = frozenset({"projection", "returning", "other"})
# When several sensitive columns feed one output, the strategy that shows least wins.
_STRICTNESS = {Strategy.NULL: 0, Strategy.REDACT: 1, Strategy.HASH: 2, Strategy.PARTIAL: 3}
_Names = dict[tuple[str, str], list[tuple[str, Classification]]]
# Objects below this OID were created by initdb (PostgreSQL's FirstNormalObjectId): the system
# catalogs and views hold no customer data; their text is still scanned.
FIRST_USER_OID = 16384


class ClassificationSource(Protocol):
    """One target's column classifications (bastion.catalog.CatalogCache satisfies it)."""

    @property
    def classifications(self) -> Mapping[tuple[int, int], Classification]: ...

    @property
    def ready(self) -> bool: ...

    def invalidate(self) -> None: ...


class ResultMaskPlanner:
    def __init__(
        self, builder: MaskPlanBuilder, sources: Mapping[str, ClassificationSource]
    ) -> None:
        self.builder = builder
        self._sources = sources
        # Each entry keeps the classifications it was built from alive, so their id() in the
        # key cannot be reused by a later snapshot while the entry exists.
        self._plans: dict[tuple[object, ...], tuple[tuple[object, object], RowMaskPlan | None]] = {}
        self._names: dict[int, tuple[object, _Names]] = {}
        self._finders: dict[int, tuple[object, TableFinder]] = {}
        self._strategy_builders: dict[Strategy, MaskPlanBuilder] = {}
        # What happens to statements that would reveal masked values other than in their
        # results: "deny", "require_approval" or "allow" (masking.inference_guard, and
        # masking.moving_masked_data for copies into tables and files).
        self.inference_effect = "deny"
        self.moving_effect = "deny"

    def plan(
        self,
        context: object,
        statement: StatementInfo | None,
        columns: Sequence[OriginColumn],
        unmask: frozenset[str] = frozenset(),
        mask_with: str | None = None,
        *,
        shape: Hashable | None = None,
    ) -> RowMaskPlan | None:
        target = str(getattr(context, "target", ""))
        source = self._sources.get(target)
        classifications = source.classifications if source is not None else {}
        # Only results with computed columns depend on the statement (their taint).
        computed = statement if any(not c.table_oid for c in columns) else None
        described = tuple(columns) if shape is None else shape
        key = (target, id(classifications), described, unmask, mask_with, id(computed))
        try:
            kept, cached = self._plans[key]
        except KeyError:
            pass
        except TypeError:  # columns that are not hashable: plan without the cache
            return self._build(source, classifications, columns, statement, unmask, mask_with)
        else:
            if kept[0] is classifications and kept[1] is computed:
                return cached.fresh() if cached is not None else None
        plan = self._build(source, classifications, columns, statement, unmask, mask_with)
        if len(self._plans) >= _CACHE_LIMIT:
            self._plans.clear()
        # The entry keeps what its key's ids point to alive, so those ids are not reused.
        self._plans[key] = ((classifications, computed), plan)
        return plan.fresh() if plan is not None else None

    def mask_text(self, text: str) -> tuple[str, Mapping[str, int]]:
        masked, counts = self.builder.mask_text(text)
        return masked, {str(k): v for k, v in counts.items()}

    def changed(self, context: object) -> None:
        """The target's schema changed (DDL ran through Bastion): reload its catalog."""
        source = self._sources.get(str(getattr(context, "target", "")))
        if source is not None:
            source.invalidate()

    def _build(
        self,
        source: ClassificationSource | None,
        classifications: Mapping[tuple[int, int], Classification],
        columns: Sequence[OriginColumn],
        statement: StatementInfo | None,
        unmask: frozenset[str],
        mask_with: str | None = None,
    ) -> RowMaskPlan | None:
        ready = source is not None and source.ready
        unknown_table = False
        decisions = []
        # Worked out on the first computed column: each output's own taint when the
        # statement's outputs line up with the result's columns, else the whole statement's.
        taints: Sequence[Classification | None] | None = None
        for index, column in enumerate(columns):
            text = pgtypes.can_hold_text(column.type_oid)
            if not column.table_oid:
                if taints is None:
                    taints = self._taints(source, statement, len(columns))
                taint = taints[index]
                if taint is not None and not _counting(column, statement):
                    decisions.append(taint)
                else:
                    decisions.append(_NO_ORIGIN_TEXT if text else _NO_ORIGIN_OTHER)
                continue
            known = classifications.get((column.table_oid, column.attnum))
            if known is not None:
                decisions.append(known)
                continue
            if column.table_oid < FIRST_USER_OID:
                decisions.append(_SYSTEM_TEXT if text else _SYSTEM_OTHER)
                continue
            unknown_table = True
            decisions.append(_UNKNOWN_TEXT if text else _UNKNOWN_OTHER)
        if unknown_table and ready and source is not None:
            source.invalidate()
        shown: frozenset[SensitiveClass] = frozenset()
        if unmask:
            decisions = [_unmasked(decision, unmask) for decision in decisions]
            shown = frozenset(c for c in SensitiveClass if str(c) in unmask)
        if mask_with is None:
            return self.builder.build(columns, decisions, shown)
        strategy = Strategy(mask_with)
        decisions = [_with_strategy(decision, strategy) for decision in decisions]
        return self._builder_for(strategy).build(columns, decisions, shown)

    def _builder_for(self, strategy: Strategy) -> MaskPlanBuilder:
        """A builder whose every class uses `strategy` (free-text findings included)."""
        builder = self._strategy_builders.get(strategy)
        if builder is None:
            builder = MaskPlanBuilder(
                scanner=self.builder.scanner,
                key=self.builder.key,
                strategies=dict.fromkeys(SensitiveClass, strategy),
            )
            self._strategy_builders[strategy] = builder
        return builder

    def guard(
        self, context: object, statement: StatementInfo, unmask: frozenset[str]
    ) -> tuple[str, str] | None:
        """Why `statement` would reveal masked values without returning them, or None: it
        filters, orders or groups by a masked column (inference), or copies masked columns
        somewhere other than the client."""
        if "all" in unmask:
            return None
        source = self._sources.get(str(getattr(context, "target", "")))
        names = self._by_name(source)
        if not names:
            return None
        reason = _guarded(names, statement, unmask)
        if reason is None:
            return None
        moving = reason.startswith("it copies")
        effect = self.moving_effect if moving else self.inference_effect
        return None if effect == "allow" else (effect, reason)

    def _taints(
        self, source: ClassificationSource | None, statement: StatementInfo | None, width: int
    ) -> Sequence[Classification | None]:
        """What each output column of `statement` may carry when it is computed: the
        classification of the strictest sensitive column it reads (None when it reads none).
        An output reads what its own expression refers to when the statement's outputs line
        up with the result; otherwise, or when an output's lineage is not fully known, it may
        carry anything the statement's projection refers to."""
        if statement is None:
            return [None] * width
        names = self._by_name(source)
        tables = [*statement.tables_read, *statement.tables_written]
        outputs = self._aligned(source, statement, width)
        whole: Classification | None = None
        if outputs is None or any(output.opaque for output in outputs):
            projected = [ref for ref in statement.columns if ref.clause in _OUTPUT_CLAUSES]
            whole = _strictest(names, projected, tables)
        if outputs is None:
            return [whole] * width
        return [
            whole if output.opaque else _strictest(names, output.refs, tables) for output in outputs
        ]

    def _aligned(
        self, source: ClassificationSource | None, statement: StatementInfo, width: int
    ) -> list[OutputColumn] | None:
        """The statement's outputs, one per result column (stars expanded through the
        catalog); None when they cannot be lined up with a result of `width` columns."""
        outputs = getattr(statement, "outputs", None)
        if outputs is None:
            return None
        if not any(output.star for output in outputs):
            return list(outputs) if len(outputs) == width else None
        finder = self._finder(source)
        if finder is None:
            return None
        aligned: list[OutputColumn] = []
        for output in outputs:
            if not output.star:
                aligned.append(output)
                continue
            table = output.refs[0].table if output.refs else None
            found = finder.columns(table) if table is not None else None
            if found is None:
                return None
            aligned.extend(
                OutputColumn(refs=(ColumnRef(c.column, "projection", table),), plain=True)
                for c in found
            )
        return aligned if len(aligned) == width else None

    def _finder(self, source: ClassificationSource | None) -> TableFinder | None:
        """Relations of the source's current snapshot, by name (None before it loads)."""
        snapshot = getattr(source, "snapshot", None)
        if snapshot is None:
            return None
        cached = self._finders.get(id(snapshot))
        if cached is not None and cached[0] is snapshot:
            return cached[1]
        finder = TableFinder(snapshot.catalog)
        self._finders = {id(snapshot): (snapshot, finder)}
        return finder

    # -- COPY ... TO STDOUT ------------------------------------------------------------------

    def copy_refusal(
        self, context: object, statement: StatementInfo, unmask: frozenset[str]
    ) -> str | None:
        """Why the rows of this COPY ... TO STDOUT could not be masked, or None when they can."""
        copy = statement.copy
        if copy is None or "all" in unmask:
            return None
        if not copy.options_known:
            return "Bastion cannot read this COPY's options, so it cannot mask its rows"
        try:
            copy_format(copy)
        except ValueError as error:
            return f"Bastion cannot mask rows in this COPY format: {error}"
        if copy.format == "binary":
            finder = self._finder(self._sources.get(str(getattr(context, "target", ""))))
            if finder is None or computed_outputs(statement, finder):
                return (
                    "a binary COPY of computed columns (or of a table not in the catalog) "
                    "cannot be masked, because their types are not known"
                )
        return None

    def plan_copy(
        self,
        context: object,
        statement: StatementInfo,
        response: bytes | memoryview,
        unmask: frozenset[str] = frozenset(),
        mask_with: str | None = None,
    ) -> CopyOutRewriter | None:
        """The rewriter of a COPY ... TO STDOUT whose CopyOutResponse is `response`; None when
        no column needs work (its rows then pass untouched)."""
        copy = statement.copy
        if copy is None:
            raise ProtocolViolation("a COPY result for a statement that is not a COPY")
        overall, formats = decode_copy_response(response)
        binary = overall == 1
        source = self._sources.get(str(getattr(context, "target", "")))
        finder = self._finder(source)
        columns = copy_columns(statement, finder, binary) if finder is not None else None
        if columns is None or len(columns) != len(formats):
            if binary:
                raise ProtocolViolation(
                    "the columns of a binary COPY do not match the target's catalog"
                )
            if source is not None and finder is not None:
                source.invalidate()  # the catalog may be out of date: read it again
            # Every column counts as computed: each may carry what the statement reads.
            columns = [CopyColumn("?column?", 0, 0, pgtypes.TEXT, -1, 0)] * len(formats)
        plan = self.plan(context, statement, columns, unmask, mask_with)
        if plan is None:
            return None
        text = None if binary else copy_format(copy)
        return CopyOutRewriter(plan, text, header=copy.header)

    def _by_name(self, source: ClassificationSource | None) -> _Names:
        """schema.table.column -> classification, for the source's current snapshot."""
        snapshot = getattr(source, "snapshot", None)
        if snapshot is None:
            return {}
        cached = self._names.get(id(snapshot))
        if cached is not None and cached[0] is snapshot:
            return cached[1]
        names: _Names = {}
        for column in snapshot.catalog.columns:
            decided = snapshot.classifications.get((column.table_oid, column.attnum))
            if decided is not None:
                names.setdefault((column.table, column.column), []).append((column.schema, decided))
        self._names = {id(snapshot): (snapshot, names)}
        return names


def _strictest(
    names: _Names, refs: Sequence[ColumnRef], tables: Sequence[TableRef]
) -> Classification | None:
    """The classification a computed column reading `refs` takes: that of the strictest
    sensitive column among them (None when none is sensitive). A reference whose table is not
    certain may be a column of any of the statement's tables."""
    found: list[Classification] = []
    for ref in refs:
        candidates = [ref.table] if ref.table is not None else tables
        for table in candidates:
            found.extend(_lookup(names, table.schema, table.name, ref.name))
    masked = [c for c in found if c.action is Action.MASK]
    if not masked:
        return None
    strictest = min(masked, key=_strictness)
    return Classification.masked(
        strictest.sensitive_class or SensitiveClass.SECRET,
        strictest.strategy or Strategy.REDACT,
        f"computed from a {strictest.sensitive_class} column",
    )


def _counting(column: OriginColumn, statement: StatementInfo | None) -> bool:
    """A row count: `count(...)` is the only function of the statement and the column is the
    bigint named count. Anything else computed from a sensitive column is tainted."""
    name = str(getattr(column, "name", ""))
    if statement is None or column.type_oid != pgtypes.INT8 or name != "count":
        return False
    return all(function.rsplit(".", 1)[-1] == "count" for function in statement.functions)


def _lookup(names: _Names, schema: str | None, table: str, column: str) -> list[Classification]:
    if column == "*":
        return [
            decided
            for (table_name, _), entries in names.items()
            if table_name == table
            for entry_schema, decided in entries
            if schema is None or entry_schema == schema
        ]
    return [
        decided
        for entry_schema, decided in names.get((table, column), ())
        if schema is None or entry_schema == schema
    ]


def _strictness(decision: Classification) -> int:
    return _STRICTNESS.get(decision.strategy or Strategy.REDACT, 1)


def _unmasked(decision: Classification, unmask: frozenset[str]) -> Classification:
    """The decision once the policy's unmask grant applies: granted classes pass."""
    if "all" in unmask:
        if decision.action is Action.PASS:
            return decision
        return Classification.passing(f"unmasked by policy ({decision.reason})")
    if decision.action is Action.MASK and str(decision.sensitive_class) in unmask:
        return Classification.passing(f"unmasked by policy ({decision.reason})")
    return decision


def _guarded(names: _Names, statement: StatementInfo, unmask: frozenset[str]) -> str | None:
    tables = (*statement.tables_read, *statement.tables_written)
    for ref in getattr(statement, "inference_columns", ()):
        found = _masked_ref(names, ref, tables, unmask)
        if found is not None:
            where = _CLAUSE_WORDS.get(ref.clause, "a condition")
            return f"it uses the masked column {found} in {where}"
    if getattr(statement, "moves_data", False):
        for ref in statement.columns:
            if ref.clause in _OUTPUT_CLAUSES:
                found = _masked_ref(names, ref, tables, unmask)
                if found is not None:
                    return f"it copies the masked column {found} somewhere other than the client"
    for inner in statement.inner:
        reason = _guarded(names, inner, unmask)
        if reason is not None:
            return reason
    return None


def _masked_ref(
    names: _Names, ref: ColumnRef, tables: Sequence[TableRef], unmask: frozenset[str]
) -> str | None:
    candidates = [ref.table] if ref.table is not None else list(tables)
    known = False
    for table in candidates:
        for decided in _lookup(names, table.schema, table.name, ref.name):
            known = True
            if decided.action is Action.MASK and str(decided.sensitive_class) not in unmask:
                return f"{table.qualified}.{ref.name}"
    if known:
        return None
    # A name no table of the statement has: a column renamed in a subquery or CTE. It may
    # carry any column of the tables read, so it counts as masked when any of them is.
    for table in tables:
        for decided in _lookup(names, table.schema, table.name, "*"):
            if decided.action is Action.MASK and str(decided.sensitive_class) not in unmask:
                return f"{ref.name} (which may come from a masked column of {table.qualified})"
    return None


_CLAUSE_WORDS = {
    "where": "a condition",
    "join": "a join condition",
    "having": "a HAVING condition",
    "order": "ORDER BY",
    "group": "GROUP BY",
    "window": "a window",
    "projection": "a CASE condition",
}


def _with_strategy(decision: Classification, strategy: Strategy) -> Classification:
    if decision.action is not Action.MASK or decision.sensitive_class is None:
        return decision
    return Classification.masked(decision.sensitive_class, strategy, decision.reason)

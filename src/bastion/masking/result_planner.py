"""ResultMaskPlanner: the pipeline's mask planner over live per-target classifications.

Each target has a source of column classifications (a catalog cache, loaded from the server's
catalog and refreshed on a TTL or after DDL). For every result, each output column that names
its origin (table OID, attribute number) takes that column's classification. A column with no
origin (an expression, a function result) has its content scanned when its type can hold text;
so has a column of a system catalog or view (pg_catalog, information_schema).
A column whose origin is unknown fails closed: before the catalog has loaded, or for a table the
snapshot does not have yet (created since), a text column is scanned and any other column is
masked with a type-valid placeholder; an unknown table also asks the source to reload.

Plans are cached per (target, snapshot, result shape): the same query asked again costs a dict
lookup, and a result with no column needing work costs nothing per row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from bastion.masking import pgtypes
from bastion.masking.classes import SensitiveClass, Strategy
from bastion.masking.classifier import Classification
from bastion.masking.plan import MaskPlanBuilder, RowMaskPlan
from bastion.masking.planner import OriginColumn

_NO_ORIGIN_TEXT = Classification.scanned("no origin: content scan")
_NO_ORIGIN_OTHER = Classification.passing("no origin; the type cannot hold text")
_UNKNOWN_TEXT = Classification.scanned("origin not in the catalog yet: content scan")
_UNKNOWN_OTHER = Classification.masked(
    SensitiveClass.SECRET, Strategy.REDACT, "origin not in the catalog yet: withheld"
)
_SYSTEM_TEXT = Classification.scanned("system catalog: content scan")
_SYSTEM_OTHER = Classification.passing("system catalog; the type cannot hold text")
_CACHE_LIMIT = 4096
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
        self._plans: dict[tuple[object, ...], tuple[object, RowMaskPlan | None]] = {}

    def plan(
        self, context: object, statement: object, columns: Sequence[OriginColumn]
    ) -> RowMaskPlan | None:
        target = str(getattr(context, "target", ""))
        source = self._sources.get(target)
        classifications = source.classifications if source is not None else {}
        key = (target, id(classifications), tuple(columns))
        try:
            _, cached = self._plans[key]
        except KeyError:
            pass
        except TypeError:  # columns that are not hashable: plan without the cache
            return self._build(source, classifications, columns)
        else:
            return cached.fresh() if cached is not None else None
        plan = self._build(source, classifications, columns)
        if len(self._plans) >= _CACHE_LIMIT:
            self._plans.clear()
        self._plans[key] = (classifications, plan)
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
    ) -> RowMaskPlan | None:
        ready = source is not None and source.ready
        unknown_table = False
        decisions = []
        for column in columns:
            text = pgtypes.can_hold_text(column.type_oid)
            if not column.table_oid:
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
        return self.builder.build(columns, decisions)

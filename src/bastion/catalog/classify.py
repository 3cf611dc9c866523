"""Classifying every column of a catalog: tables by the masking classifier, views by lineage.

This module owns the decision for each (relation OID, attribute number) of a `Catalog`:

- a label naming the column wins, whatever the relation;
- a partition takes the classification of its partitioned table's column of the same name
  (labels on the partitioned table cover its partitions);
- a table, partitioned table or foreign table column goes through `classify_column` (name
  rules, then the type);
- a view or materialized view column follows its `Lineage`: a plain reference inherits the
  classification of the column it names; a value computed from a masked column is masked as
  that column's class (when several feed it, the one whose strategy shows least); anything
  else is scanned when its type can hold text and passes otherwise. A name rule can still
  make a view column masked, never less. A definition that cannot be followed falls back to
  every column of every relation it names; one that cannot be parsed at all is masked whole.

It is pure: no connection, no threads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bastion.catalog.lineage import referenced_columns, view_lineage
from bastion.catalog.model import Catalog, ColumnKey, Relation
from bastion.catalog.scope import Lineage, LineageUnresolved
from bastion.masking import pgtypes
from bastion.masking.classes import CLASS_SPECS, SensitiveClass, Strategy
from bastion.masking.classifier import (
    Action,
    CatalogColumn,
    Classification,
    classify_column,
    unmatched_labels,
)

# What a column gets when nothing about it can be established: the whole value hidden.
_IN_DOUBT_CLASS = SensitiveClass.SECRET
_IN_DOUBT_STRATEGY = Strategy.REDACT
# A value computed from several masked columns takes the strategy that shows the least.
_STRATEGY_ORDER = {Strategy.NULL: 0, Strategy.REDACT: 1, Strategy.HASH: 2, Strategy.PARTIAL: 3}


@dataclass(frozen=True, slots=True)
class _ViewAnalysis:
    """A view's per-column lineage, or the fallback lineage of every column and why."""

    columns: tuple[Lineage, ...] | None
    fallback: Lineage | None
    problem: str | None


@dataclass(frozen=True)
class CatalogClassification:
    """The classification of every column, and the labels that named no column."""

    classifications: Mapping[ColumnKey, Classification]
    unmatched_labels: tuple[str, ...]


def classify_catalog(
    catalog: Catalog,
    labels: Mapping[str, str] | None = None,
    strategies: Mapping[SensitiveClass, Strategy] | None = None,
) -> CatalogClassification:
    """Classify every column of `catalog`; `labels` and `strategies` as in the configuration."""
    labels = labels or {}
    classifier = _Classifier(catalog, labels, strategies or {})
    classifications = {
        (column.table_oid, column.attnum): classifier.classification(
            (column.table_oid, column.attnum)
        )
        for column in catalog.columns
    }
    return CatalogClassification(classifications, tuple(unmatched_labels(catalog.columns, labels)))


class _Classifier:
    def __init__(
        self,
        catalog: Catalog,
        labels: Mapping[str, str],
        strategies: Mapping[SensitiveClass, Strategy],
    ) -> None:
        self.catalog = catalog
        self.labels = labels
        self.strategies = strategies
        self.done: dict[ColumnKey, Classification] = {}
        self.pending: set[ColumnKey] = set()
        self.views: dict[int, _ViewAnalysis] = {}
        # Columns decided by a label, directly or as a partition or plain view reference of a
        # labelled column: an operator's word, which a name rule must not overrule.
        self.labelled: set[ColumnKey] = set()

    def classification(self, key: ColumnKey) -> Classification:
        known = self.done.get(key)
        if known is not None:
            return known
        if key in self.pending:  # a view reading itself; PostgreSQL forbids it
            return Classification.masked(
                _IN_DOUBT_CLASS, _IN_DOUBT_STRATEGY, "circular view definition: masked"
            )
        self.pending.add(key)
        try:
            result = self._decide(key)
        finally:
            self.pending.discard(key)
        self.done[key] = result
        return result

    def _decide(self, key: ColumnKey) -> Classification:
        column = self.catalog.column(key)
        relation = self.catalog.relations.get(key[0])
        if column is None or relation is None:
            return Classification.masked(
                _IN_DOUBT_CLASS, _IN_DOUBT_STRATEGY, "column missing from the catalog: masked"
            )
        label = self.labels.get(column.qualified)
        if label is not None:
            self.labelled.add(key)
            return classify_column(column, label, self.strategies)
        if relation.parent_oid is not None:
            inherited = self._from_parent(key, column, relation.parent_oid)
            if inherited is not None:
                return inherited
        if relation.kind.has_definition:
            return self._view_column(key, column, relation)
        return classify_column(column, None, self.strategies)

    def _from_parent(
        self, key: ColumnKey, column: CatalogColumn, parent_oid: int
    ) -> Classification | None:
        parent = self.catalog.relations.get(parent_oid)
        if parent is None:
            return None
        for candidate in self.catalog.columns_of(parent_oid):
            if candidate.column == column.column:
                parent_key = (candidate.table_oid, candidate.attnum)
                decided = self.classification(parent_key)
                if parent_key in self.labelled:
                    self.labelled.add(key)
                return _with_reason(decided, f"partition of {parent.qualified}: {decided.reason}")
        return None

    # -- views -------------------------------------------------------------------------------

    def _view_column(
        self, key: ColumnKey, column: CatalogColumn, relation: Relation
    ) -> Classification:
        analysis = self._analysis(relation)
        if analysis.columns is not None:
            lineage = analysis.columns[self._position(column)]
            decided = self._from_lineage(column, lineage, None)
            if lineage.plain and lineage.origin in self.labelled:
                self.labelled.add(key)
                return decided
        elif analysis.fallback is not None:
            decided = self._from_lineage(column, analysis.fallback, analysis.problem)
        else:
            decided = Classification.masked(
                _IN_DOUBT_CLASS, _IN_DOUBT_STRATEGY, f"{analysis.problem}: masked"
            )
        if decided.action is Action.MASK:
            return decided
        by_name = classify_column(column, None, self.strategies)
        return by_name if by_name.action is Action.MASK else decided

    def _position(self, column: CatalogColumn) -> int:
        for index, candidate in enumerate(self.catalog.columns_of(column.table_oid)):
            if candidate.attnum == column.attnum:
                return index
        raise LookupError(column.qualified)  # pragma: no cover - the column came from there

    def _analysis(self, relation: Relation) -> _ViewAnalysis:
        known = self.views.get(relation.oid)
        if known is not None:
            return known
        analysis = self._analyze(relation)
        self.views[relation.oid] = analysis
        return analysis

    def _analyze(self, relation: Relation) -> _ViewAnalysis:
        if relation.definition is None:
            return _ViewAnalysis(None, None, "view definition unavailable")
        width = len(self.catalog.columns_of(relation.oid))
        try:
            lineage = view_lineage(relation.definition, self.catalog)
            if len(lineage) != width:
                raise LineageUnresolved(f"{len(lineage)} output columns for {width} columns")
            return _ViewAnalysis(tuple(lineage), None, None)
        except (LineageUnresolved, RecursionError) as error:
            problem = f"view definition not followed ({error})"
        fallback = referenced_columns(relation.definition, self.catalog)
        if fallback is None:
            return _ViewAnalysis(None, None, "view definition could not be parsed")
        return _ViewAnalysis(None, fallback, problem)

    def _from_lineage(
        self, column: CatalogColumn, lineage: Lineage, problem: str | None
    ) -> Classification:
        if lineage.plain and lineage.origin is not None:
            source = self.classification(lineage.origin)
            where = self.catalog.qualified(lineage.origin)
            return _with_reason(source, f"view column of {where}: {source.reason}")
        sensitive = [
            (decided, key)
            for key in lineage.sources
            if (decided := self.classification(key)).action is Action.MASK
        ]
        if sensitive:
            decided, key = min(sensitive, key=lambda item: self._sensitivity(*item))
            assert decided.sensitive_class is not None and decided.strategy is not None
            reason = f"computed from {self.catalog.qualified(key)}"
            if len(sensitive) > 1:
                reason += f" and {len(sensitive) - 1} more masked columns"
            if problem is not None:
                reason = f"{problem}; {reason}"
            return Classification.masked(decided.sensitive_class, decided.strategy, reason)
        if problem is not None:
            why = problem
        elif lineage.opaque:
            why = "origin not fully resolved"
        else:
            why = "computed value"
        if pgtypes.can_hold_text(column.type_oid):
            return Classification.scanned(f"{why}: content scan")
        return Classification.passing(f"{why}; {column.type_name} cannot hold free text")

    def _sensitivity(self, decided: Classification, key: ColumnKey) -> tuple[int, int, str]:
        """Order masked sources: the strategy that shows least first, then the more precise
        class (CLASS_SPECS rank), then the name, so the choice never depends on set order."""
        assert decided.sensitive_class is not None and decided.strategy is not None
        return (
            _STRATEGY_ORDER.get(decided.strategy, 0),
            CLASS_SPECS[decided.sensitive_class].rank,
            self.catalog.qualified(key),
        )


def _with_reason(decided: Classification, reason: str) -> Classification:
    return Classification(decided.action, decided.sensitive_class, decided.strategy, reason)

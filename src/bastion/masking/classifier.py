"""Per-target column classification: what each table column holds and how it leaves Bastion.

This module owns the pure model behind `bastion classify`: given catalog rows (table OID,
attribute number, schema, table, column, type) and the labels an operator wrote in
configuration, it decides for every column whether it passes, is masked as a given class with
a given strategy, or has its content scanned, and records why. Precedence: an explicit label,
then a name rule (`names.py`), then the type (columns that can hold free text are scanned,
others pass). It does not read the catalog (the caller does) and it does not touch rows.

Labels are keyed `schema.table.column` (names as stored in the catalog) and valued with a class
(`email`), a class and strategy (`email:hash`), `scan`, or `none`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from bastion.errors import ConfigError
from bastion.masking import pgtypes
from bastion.masking.classes import (
    SensitiveClass,
    Strategy,
    default_strategy,
    parse_class,
    parse_strategy,
)
from bastion.masking.names import classify_name


class Action(StrEnum):
    PASS = "pass"  # leaves as the server sent it
    MASK = "mask"  # the whole value is rewritten with `strategy`
    SCAN = "scan"  # content detectors run over the value; what they find is masked


@dataclass(frozen=True, slots=True)
class Classification:
    """The decision for one column, and the reason a person can read."""

    action: Action
    sensitive_class: SensitiveClass | None
    strategy: Strategy | None
    reason: str

    @classmethod
    def passing(cls, reason: str) -> Classification:
        return cls(Action.PASS, None, None, reason)

    @classmethod
    def masked(
        cls, sensitive_class: SensitiveClass, strategy: Strategy, reason: str
    ) -> Classification:
        return cls(Action.MASK, sensitive_class, strategy, reason)

    @classmethod
    def scanned(cls, reason: str) -> Classification:
        return cls(Action.SCAN, None, None, reason)


@dataclass(frozen=True, slots=True)
class CatalogColumn:
    """One table column as the catalog describes it (pg_attribute joined with pg_class,
    pg_namespace and pg_type; domains resolved to their base type)."""

    table_oid: int
    attnum: int
    schema: str
    table: str
    column: str
    type_oid: int
    type_name: str

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}.{self.column}"


_LABEL_SCAN = "scan"
_LABEL_NONE = "none"


def _from_label(
    column: CatalogColumn, label: str, strategies: Mapping[SensitiveClass, Strategy]
) -> Classification:
    value = label.strip().lower()
    if value == _LABEL_NONE:
        return Classification.passing(f"label: {column.qualified} is not sensitive")
    if value == _LABEL_SCAN:
        if not pgtypes.can_hold_text(column.type_oid):
            return Classification.passing(
                f"label asks for a content scan, but {column.type_name} cannot hold text"
            )
        return Classification.scanned("label: content scan")
    class_name, _, strategy_name = value.partition(":")
    try:
        sensitive_class = parse_class(class_name)
        strategy = (
            parse_strategy(strategy_name)
            if strategy_name
            else strategies.get(sensitive_class, default_strategy(sensitive_class))
        )
    except ValueError as error:
        raise ConfigError(f"masking label for {column.qualified}: {error}") from error
    return Classification.masked(sensitive_class, strategy, f"label: {value}")


def classify_column(
    column: CatalogColumn,
    label: str | None = None,
    strategies: Mapping[SensitiveClass, Strategy] | None = None,
) -> Classification:
    """The classification of one column; `strategies` overrides class defaults."""
    strategies = strategies or {}
    if label is not None:
        return _from_label(column, label, strategies)
    match = classify_name(column.column, column.type_oid, table=column.table)
    if match is not None:
        strategy = strategies.get(match.sensitive_class, default_strategy(match.sensitive_class))
        return Classification.masked(match.sensitive_class, strategy, match.reason)
    if pgtypes.can_hold_text(column.type_oid):
        return Classification.scanned(f"content scan: {column.type_name} can hold free text")
    return Classification.passing(f"{column.type_name} cannot hold free text; no name rule")


def classify_columns(
    columns: Iterable[CatalogColumn],
    labels: Mapping[str, str] | None = None,
    strategies: Mapping[SensitiveClass, Strategy] | None = None,
) -> dict[tuple[int, int], Classification]:
    """(table OID, attribute number) -> Classification for every column given."""
    labels = labels or {}
    return {
        (column.table_oid, column.attnum): classify_column(
            column, labels.get(column.qualified), strategies
        )
        for column in columns
    }


def unmatched_labels(columns: Iterable[CatalogColumn], labels: Mapping[str, str]) -> list[str]:
    """Label keys that name no column (a typo, or a column dropped since): worth a warning."""
    known = {column.qualified for column in columns}
    return sorted(key for key in labels if key not in known)

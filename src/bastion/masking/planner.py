"""The masking stage for the pipeline: columns in, a RowMaskPlan (or None) out.

This module owns `CatalogMaskPlanner`, which satisfies the pipeline's `MaskPlanner` protocol.
Each RowDescription field that names its origin (table OID and attribute number) takes the
classification computed for that table column; a field without a known origin (an expression,
a function result, a column of a table the catalog cache has not seen) has its content scanned
when its type can hold text and passes otherwise. That is the content-detector net of
ARCHITECTURE.md §6 only: parse-tree taint of computed columns is not done here yet, so
`upper(email)` is caught by the e-mail detector, while `md5(email)` is not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from bastion.masking import pgtypes
from bastion.masking.classifier import Classification
from bastion.masking.plan import MaskPlanBuilder, RowMaskPlan

_UNKNOWN_ORIGIN_TEXT = Classification.scanned("no known origin: content scan")
_UNKNOWN_ORIGIN_OTHER = Classification.passing("no known origin; the type cannot hold text")


class OriginColumn(Protocol):
    """A RowDescription field with its origin (wire `Column` satisfies it)."""

    @property
    def table_oid(self) -> int: ...

    @property
    def attnum(self) -> int: ...

    @property
    def type_oid(self) -> int: ...

    @property
    def type_modifier(self) -> int: ...

    @property
    def format(self) -> int: ...


class CatalogMaskPlanner:
    """Plans masking from per-column classifications keyed by (table OID, attribute number)."""

    def __init__(
        self,
        builder: MaskPlanBuilder,
        classifications: Mapping[tuple[int, int], Classification],
    ) -> None:
        self.builder = builder
        self.classifications = classifications

    def decide(self, column: OriginColumn) -> Classification:
        if column.table_oid:
            known = self.classifications.get((column.table_oid, column.attnum))
            if known is not None:
                return known
        if pgtypes.can_hold_text(column.type_oid):
            return _UNKNOWN_ORIGIN_TEXT
        return _UNKNOWN_ORIGIN_OTHER

    def plan(
        self, context: object, statement: object, columns: Sequence[OriginColumn]
    ) -> RowMaskPlan | None:
        """The plan for one result; `context` and `statement` are not consulted yet."""
        return self.builder.build(columns, [self.decide(column) for column in columns])

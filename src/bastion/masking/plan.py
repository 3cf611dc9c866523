"""MaskPlan: the per-result row rewriter, resolved once when a RowDescription arrives.

This module owns `MaskPlanBuilder.build`, which turns a result's columns and one
`Classification` per column into a `RowMaskPlan` (or None when no column needs work, so rows
pass as raw bytes), and the plan's row loop. Building picks one function per column: a
precomputed constant for `redact`, a `FieldMasker` for other strategies, or content scanning
for columns whose type can hold text. Scanning is dropped for types that cannot (integers,
dates, UUIDs...). Applying walks a DataRow body (int16 count, then an int32 length and bytes per
field, -1 for NULL), stops after the last column that needs work, copies every untouched field
as part of a slice, and returns the new body; the caller frames it. `apply_batch` runs one
Hyperscan pass over the scanned fields of many rows, the fast path for the relay.

A malformed DataRow (wrong field count, lengths past the end) raises ProtocolViolation: the
session must fail closed rather than relay a row it could not inspect.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Final, NamedTuple, Protocol

from bastion.errors import ProtocolViolation
from bastion.masking import pgtypes
from bastion.masking.bulk import ContentScanner, Finding
from bastion.masking.classes import SensitiveClass, Strategy, default_strategy
from bastion.masking.classifier import Action, Classification
from bastion.masking.spans import SpanMasker
from bastion.masking.strategies import Constant, FieldMasker, resolve_masker
from bastion.masking.tokens import TokenKey

_INT16 = struct.Struct("!h")
_INT32 = struct.Struct("!i")
_NULL_FIELD: Final = _INT32.pack(-1)

# Work per column: what to do with a non-NULL value.
_CONSTANT: Final = 0  # payload: the whole field (length + bytes), copied as is
_FUNCTION: Final = 1  # payload: a FieldMasker
_SCAN: Final = 2  # payload: whether the value is a JSON document


class ColumnShape(Protocol):
    """What a plan needs of a RowDescription field (wire `Column` satisfies it)."""

    @property
    def type_oid(self) -> int: ...

    @property
    def type_modifier(self) -> int: ...

    @property
    def format(self) -> int: ...


@cache
def default_scanner() -> ContentScanner:
    """The built-in detectors, compiled once per process (about 0.2 s)."""
    return ContentScanner()


def _field(value: bytes | None) -> bytes:
    return _NULL_FIELD if value is None else _INT32.pack(len(value)) + value


def _no_masker(value: bytes) -> bytes | None:
    raise AssertionError("a column without a masker was asked to mask")


class _Work(NamedTuple):
    """What to do with a non-NULL value of one column."""

    kind: int  # _CONSTANT, _FUNCTION or _SCAN
    field: bytes = b""  # _CONSTANT: the whole replacement field
    masker: FieldMasker = _no_masker  # _FUNCTION
    json: bool = False  # _SCAN: the value is a JSON document
    sensitive_class: SensitiveClass | None = None


# An edit replaces row[start:end] (a whole field: length and value) with `field`.
_Edit = tuple[int, int, bytes]
# A scanned value's place: its row's edit list, its column, where its bytes are in the row.
_Owner = tuple[list[_Edit], int, int, int]


class RowMaskPlan:
    """Rewrites the DataRows of one result. Satisfies the pipeline's `MaskPlan` protocol."""

    def __init__(
        self,
        works: Sequence[_Work | None],
        scanner: ContentScanner,
        span_masker: SpanMasker,
        shown: frozenset[SensitiveClass] = frozenset(),
    ) -> None:
        self._count = len(works)
        self._shown = shown  # classes found by scanning that stay in clear (policy `unmask`)
        self._works = tuple(works)
        last = max(i for i, work in enumerate(works) if work is not None)
        # Columns after the last one with work are never decoded: they are copied in one slice.
        self._walked = tuple(enumerate(self._works[: last + 1]))
        self._scanner = scanner
        self._span_masker = span_masker
        self._column_counts = [0] * len(works)
        self._found_counts: dict[SensitiveClass, int] = {}

    def fresh(self) -> RowMaskPlan:
        """The same plan with its counts at zero, for another result of the same shape."""
        return RowMaskPlan(self._works, self._scanner, self._span_masker, self._shown)

    # -- audit -----------------------------------------------------------------------------

    def masked_cells(self) -> dict[str, int]:
        """Cells masked so far, per class name (a scanned cell counts once per class found in
        it). Keys are SensitiveClass values, which compare equal to their names."""
        counts: dict[str, int] = {str(k): v for k, v in self._found_counts.items()}
        for work, count in zip(self._works, self._column_counts, strict=True):
            if work is not None and work.sensitive_class is not None and count:
                name = str(work.sensitive_class)
                counts[name] = counts.get(name, 0) + count
        return counts

    # -- rows ------------------------------------------------------------------------------

    def apply(self, row: memoryview) -> bytes:
        """The DataRow body `row` with its sensitive fields masked."""
        values: list[memoryview] = []
        owners: list[_Owner] = []
        edits = self._walk(row, values, owners)
        if values:
            findings = self._scanner.scan(values)
            if findings:
                self._mask_found(findings, owners, values)
                edits.sort()
        return _assemble(row, edits)

    def apply_batch(self, rows: Sequence[memoryview]) -> list[bytes]:
        """`apply` for many rows, with a single content scan over all their scanned fields."""
        values: list[memoryview] = []
        owners: list[_Owner] = []
        walk = self._walk
        edits_per_row = [walk(row, values, owners) for row in rows]
        if values:
            findings = self._scanner.scan(values)
            if findings:
                for edits in self._mask_found(findings, owners, values):
                    edits.sort()
        return [_assemble(row, edits) for row, edits in zip(rows, edits_per_row, strict=True)]

    def _walk(self, row: memoryview, values: list[memoryview], owners: list[_Owner]) -> list[_Edit]:
        """Edits for the masked fields of `row`; its fields to scan go to `values`, with their
        place in `owners`. Columns after the last one with work are not decoded."""
        edits: list[_Edit] = []
        counts = self._column_counts
        unpack = _INT32.unpack_from
        position = 2
        try:
            if _INT16.unpack_from(row, 0)[0] != self._count:
                raise ProtocolViolation(
                    f"a DataRow has {_INT16.unpack_from(row, 0)[0]} fields, "
                    f"its RowDescription {self._count}"
                )
            for column, work in self._walked:
                length = unpack(row, position)[0]
                if work is None or length < 0:
                    if length < -1:
                        raise ProtocolViolation(f"a DataRow field has length {length}")
                    position += 4 + length if length > 0 else 4
                    continue
                start = position + 4
                end = start + length
                kind = work[0]
                if kind == _CONSTANT:
                    edits.append((position, end, work[1]))
                    counts[column] += 1
                elif kind == _FUNCTION:
                    edits.append((position, end, _field(work[2](bytes(row[start:end])))))
                    counts[column] += 1
                else:
                    values.append(row[start:end])
                    owners.append((edits, column, start, end))
                position = end
        except struct.error as error:
            raise ProtocolViolation("a DataRow is shorter than its field lengths say") from error
        if position > len(row):
            raise ProtocolViolation("a DataRow is shorter than its field lengths say")
        return edits

    def _mask_found(
        self, findings: list[Finding], owners: Sequence[_Owner], values: Sequence[memoryview]
    ) -> list[list[_Edit]]:
        """Add an edit for every scanned value with findings; the edit lists that changed."""
        by_field: dict[int, list[Finding]] = {}
        shown = self._shown
        for finding in findings:
            if finding.sensitive_class not in shown:
                by_field.setdefault(finding.field, []).append(finding)
        changed: list[list[_Edit]] = []
        counts = self._found_counts
        for field, found in by_field.items():
            edits, column, start, end = owners[field]
            work = self._works[column]
            json = work is not None and work.json
            masked = self._span_masker.mask(values[field], found, json=json)
            edits.append((start - 4, end, _field(masked)))
            changed.append(edits)
            for sensitive_class in {finding.sensitive_class for finding in found}:
                counts[sensitive_class] = counts.get(sensitive_class, 0) + 1
        return changed


def _assemble(row: memoryview, edits: list[_Edit]) -> bytes:
    if not edits:
        return bytes(row)
    pieces: list[bytes | memoryview] = []
    copied = 0
    for start, end, field in edits:
        pieces.append(row[copied:start])
        pieces.append(field)
        copied = end
    pieces.append(row[copied:])
    return b"".join(pieces)


class MaskPlanBuilder:
    """Builds RowMaskPlans; holds what every plan shares (scanner, hash key, strategies)."""

    def __init__(
        self,
        *,
        scanner: ContentScanner | None = None,
        key: TokenKey | None = None,
        strategies: Mapping[SensitiveClass, Strategy] | None = None,
    ) -> None:
        self.scanner = scanner if scanner is not None else default_scanner()
        self.key = key
        self.strategies = dict(strategies or {})
        self.span_masker = SpanMasker(self.strategies, key)

    def build(
        self,
        columns: Sequence[ColumnShape],
        decisions: Sequence[Classification],
        shown: frozenset[SensitiveClass] = frozenset(),
    ) -> RowMaskPlan | None:
        """The plan for a result with these columns; None when every column passes. Values
        of the `shown` classes found by scanning free text stay in clear."""
        if len(columns) != len(decisions):
            raise ValueError(f"{len(columns)} columns but {len(decisions)} decisions")
        works = [self._work(c, d) for c, d in zip(columns, decisions, strict=True)]
        if all(work is None for work in works):
            return None
        return RowMaskPlan(works, self.scanner, self.span_masker, shown)

    def _work(self, column: ColumnShape, decision: Classification) -> _Work | None:
        if decision.action is Action.SCAN:
            if not pgtypes.can_hold_text(column.type_oid):
                return None
            return _Work(_SCAN, json=pgtypes.is_json(column.type_oid))
        if decision.action is not Action.MASK or decision.sensitive_class is None:
            return None
        sensitive_class = decision.sensitive_class
        strategy = decision.strategy or self.strategies.get(
            sensitive_class, default_strategy(sensitive_class)
        )
        masker: FieldMasker = resolve_masker(
            strategy,
            sensitive_class,
            column.type_oid,
            column.type_modifier,
            column.format,
            self.key,
        )
        if isinstance(masker, Constant):
            return _Work(_CONSTANT, field=_field(masker.output), sensitive_class=sensitive_class)
        return _Work(_FUNCTION, masker=masker, sensitive_class=sensitive_class)

    def mask_text(self, text: str) -> tuple[str, dict[SensitiveClass, int]]:
        """Free text (notices, errors, NOTIFY payloads, COPY rows) with what the detectors
        find masked, and the number of findings per class."""
        data = text.encode("utf-8", "surrogatepass")
        findings = self.scanner.scan([data])
        if not findings:
            return text, {}
        masked = self.span_masker.mask(data, findings)
        counts: dict[SensitiveClass, int] = {}
        for finding in findings:
            counts[finding.sensitive_class] = counts.get(finding.sensitive_class, 0) + 1
        if masked is None:  # a class configured as `null`: nothing of the text may remain
            return "", counts
        return masked.decode("utf-8", "surrogatepass"), counts


@cache
def _default_builder() -> MaskPlanBuilder:
    return MaskPlanBuilder()


def mask_text(text: str) -> tuple[str, dict[SensitiveClass, int]]:
    """`MaskPlanBuilder.mask_text` with the built-in detectors and default strategies."""
    return _default_builder().mask_text(text)

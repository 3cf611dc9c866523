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
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cache
from typing import Any, Final, NamedTuple, Protocol

from bastion.errors import ProtocolViolation
from bastion.masking import pgtypes
from bastion.masking.bulk import ContentScanner, Finding
from bastion.masking.classes import SensitiveClass, Strategy, default_strategy
from bastion.masking.classifier import Action, Classification
from bastion.masking.spans import SpanMasker
from bastion.masking.strategies import (
    EMAIL_DOMAIN,
    Constant,
    FieldMasker,
    Partial,
    resolve_masker,
)
from bastion.masking.tokens import TokenKey
from bastion.wire.postgres.errors import WireFormatError
from bastion.wire.postgres.framing import message_bodies

try:
    from bastion.masking import _rowmask
except ImportError:  # built without its C extension: the Python rewriter below does the same
    _rowmask = None  # type: ignore[assignment]

NATIVE_ROWS: Final = _rowmask is not None

_INT16 = struct.Struct("!h")
_INT32 = struct.Struct("!i")
_NULL_FIELD: Final = _INT32.pack(-1)
_DATA_ROW_HEADER = struct.Struct("!ci")
_DATA_ROW: Final = b"D"

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
        *,
        native: bool = NATIVE_ROWS,
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
        self._native = _native_rewriter(self._works) if native and _rowmask is not None else None

    def fresh(self) -> RowMaskPlan:
        """The same plan with its counts at zero, for another result of the same shape."""
        native = self._native is not None
        return RowMaskPlan(
            self._works, self._scanner, self._span_masker, self._shown, native=native
        )

    @property
    def native(self) -> bool:
        """Whether rows are rewritten by the C extension."""
        return self._native is not None

    # -- audit -----------------------------------------------------------------------------

    def masked_cells(self) -> dict[str, int]:
        """Cells masked so far, per class name (a scanned cell counts once per class found in
        it). Keys are SensitiveClass values, which compare equal to their names."""
        counts: dict[str, int] = {str(k): v for k, v in self._found_counts.items()}
        column_counts = self._column_counts
        if self._native is not None:
            column_counts = [a + b for a, b in zip(column_counts, self._native.counts, strict=True)]
        for work, count in zip(self._works, column_counts, strict=True):
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

    def apply_run(self, run: memoryview) -> bytes | None:
        """A run of whole DataRow messages (type byte and length included) with their
        sensitive fields masked, or None when none changed. The C rewriter does it when it is
        built; `apply_batch` is the same in Python."""
        if self._native is None:
            try:
                bodies = message_bodies(run)
            except WireFormatError as error:
                raise ProtocolViolation(str(error)) from error
            header = _DATA_ROW_HEADER.pack
            out = b"".join(
                header(_DATA_ROW, len(row) + 4) + row for row in self.apply_batch(bodies)
            )
            return None if out == run else out
        try:
            return self._native.rewrite(run, self._mask_joined)
        except _rowmask.MalformedRow as error:
            raise ProtocolViolation(str(error)) from error

    def _mask_joined(
        self, buffer: bytes, starts: bytes, columns: bytes
    ) -> list[tuple[int, bytes | None]]:
        """The native rewriter's scan: the values of scanned fields joined by NUL bytes,
        where each starts and its column; (value index, masked value) for those with
        findings."""
        offsets = memoryview(starts).cast("q")
        findings = self._scanner.scan_joined(buffer, offsets)
        if not findings:
            return []
        column_of = memoryview(columns).cast("i")

        def value(field: int) -> tuple[bytes, bool]:
            start = offsets[field]
            end = offsets[field + 1] - 1 if field + 1 < len(offsets) else len(buffer)
            work = self._works[column_of[field]]
            return buffer[start:end], work is not None and work.json

        return list(self._masked_values(findings, value))

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

        def value(field: int) -> tuple[memoryview, bool]:
            work = self._works[owners[field][1]]
            return values[field], work is not None and work.json

        changed: list[list[_Edit]] = []
        for field, masked in self._masked_values(findings, value):
            edits, _, start, end = owners[field]
            edits.append((start - 4, end, _field(masked)))
            changed.append(edits)
        return changed

    def _masked_values(
        self,
        findings: list[Finding],
        value: Callable[[int], tuple[bytes | memoryview, bool]],
    ) -> Iterator[tuple[int, bytes | None]]:
        """(field, masked value) for every scanned value with findings of a class not shown;
        `value(field)` gives the value and whether it is a JSON document. Counts them."""
        by_field: dict[int, list[Finding]] = {}
        shown = self._shown
        for finding in findings:
            if finding.sensitive_class not in shown:
                by_field.setdefault(finding.field, []).append(finding)
        counts = self._found_counts
        for field, found in by_field.items():
            data, json = value(field)
            yield field, self._span_masker.mask(data, found, json=json)
            for sensitive_class in {finding.sensitive_class for finding in found}:
                counts[sensitive_class] = counts.get(sensitive_class, 0) + 1


def _native_rewriter(works: Sequence[_Work | None]) -> _rowmask.RowRewriter:
    """The C rewriter doing what `RowMaskPlan.apply_batch` does for these columns."""
    assert _rowmask is not None
    operations: list[tuple[Any, ...] | None] = []
    for work in works:
        if work is None:
            operations.append(None)
        elif work.kind == _CONSTANT:
            operations.append((_rowmask.CONSTANT, work.field))
        elif work.kind == _SCAN:
            operations.append((_rowmask.SCAN,))
        elif isinstance(work.masker, Partial) and work.masker.form == EMAIL_DOMAIN:
            operations.append((_rowmask.EMAIL, work.masker))
        elif isinstance(work.masker, Partial) and work.masker.form[0] == "keep":
            _, keep_first, keep_last = work.masker.form
            operations.append((_rowmask.KEEP, work.masker, keep_first, keep_last, True))
        else:
            operations.append((_rowmask.CALL, work.masker))
    return _rowmask.RowRewriter(tuple(operations))


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
        *,
        native: bool = NATIVE_ROWS,
    ) -> RowMaskPlan | None:
        """The plan for a result with these columns; None when every column passes. Values
        of the `shown` classes found by scanning free text stay in clear. `native`: rows are
        rewritten by the C extension (the default when it is built)."""
        if len(columns) != len(decisions):
            raise ValueError(f"{len(columns)} columns but {len(decisions)} decisions")
        works = [self._work(c, d) for c, d in zip(columns, decisions, strict=True)]
        if all(work is None for work in works):
            return None
        return RowMaskPlan(works, self.scanner, self.span_masker, shown, native=native)

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

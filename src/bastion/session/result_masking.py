"""ResultMasking: which mask plan each result of a session gets, and scrubbing of free text.

A result's shape (its columns, their origins, types and wire formats) reaches Bastion in three
ways, and the relay machine reports all of them here:

- a simple Query's RowDescription comes just before its rows;
- Describe of a prepared statement gives the columns with no formats yet; the Bind that makes a
  portal of it says which formats the client wants;
- Describe of a portal gives the columns with their formats.

When a portal is executed and its shape is still unknown (a client that never describes), the
machine asks the server for it: Bastion sends its own Describe before the Execute and keeps the
answer from the client. Rows are never relayed under a shape Bastion does not know.

Error and notice texts and NOTIFY payloads go through the content detectors too: a server error
quoting a value (`Key (email)=(...)`, `invalid input syntax for type integer: "..."`) must not
carry it past the masking.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Mapping, Sequence
from functools import lru_cache

from bastion.pipeline.context import ConnectionContext
from bastion.pipeline.stages import CopyRewriter, MaskPlan, MaskPlanner
from bastion.sql.statement import StatementInfo
from bastion.wire.postgres import backend
from bastion.wire.postgres.backend import Column
from bastion.wire.postgres.framing import frame

# Error and notice fields whose text can quote data.
_TEXT_FIELDS = ("M", "D", "H", "W", "q")


@dataclasses.dataclass(slots=True)
class _Shape:
    columns: tuple[Column, ...]
    key: Hashable  # identifies the columns for the planner's cache: the wire bytes, formats


@lru_cache(maxsize=1024)
def _described(body: bytes) -> tuple[Column, ...]:
    """A RowDescription's columns; a prepared statement's comes back at every Describe."""
    return backend.decode_row_description(body)


class ResultMasking:
    def __init__(self, planner: MaskPlanner, context: ConnectionContext) -> None:
        self._planner = planner
        self._context = context
        # A prepared statement's RowDescription (b"" for NoData); its Bind decides the formats.
        self._statements: dict[str, bytes] = {}
        self._portals: dict[str, _Shape] = {}
        self._suspended: dict[str, MaskPlan | None] = {}

    # Shapes.

    def described_statement(self, name: str, body: memoryview | None) -> None:
        self._statements[name] = bytes(body) if body is not None else b""

    def described_portal(self, name: str, body: memoryview | None) -> None:
        raw = bytes(body) if body is not None else b""
        self._portals[name] = _Shape(_described(raw) if raw else (), raw)

    def bound(self, portal: str, statement: str, result_formats: tuple[int, ...]) -> None:
        self._suspended.pop(portal, None)
        raw = self._statements.get(statement)
        if raw is None:
            self._portals.pop(portal, None)
            return
        columns = _bound(raw, result_formats) if raw else ()
        self._portals[portal] = _Shape(columns, (raw, result_formats))

    def closed(self, kind: str, name: str) -> None:
        if kind == "S":
            self._statements.pop(name, None)
        else:
            self._portals.pop(name, None)
            self._suspended.pop(name, None)

    def knows_portal(self, name: str) -> bool:
        return name in self._portals or name in self._suspended

    # Plans.

    def for_rows(
        self,
        statement: StatementInfo | None,
        body: memoryview,
        unmask: frozenset[str],
        mask_with: str | None = None,
    ) -> MaskPlan | None:
        """The plan for a result whose RowDescription is `body` (simple Query)."""
        raw = bytes(body)
        return self._planner.plan(
            self._context, statement, _described(raw), unmask, mask_with, shape=raw
        )

    def for_execute(
        self,
        portal: str,
        statement: StatementInfo | None,
        unmask: frozenset[str],
        mask_with: str | None = None,
    ) -> MaskPlan | None:
        """The plan for an Execute of a portal whose shape is known."""
        if portal in self._suspended:  # a row-limited portal, executed again
            plan = self._suspended[portal]
            return plan.fresh() if plan is not None else None
        shape = self._portals[portal]
        return self._planner.plan(
            self._context, statement, shape.columns, unmask, mask_with, shape=shape.key
        )

    def for_copy(
        self,
        statement: StatementInfo,
        body: memoryview,
        unmask: frozenset[str],
        mask_with: str | None = None,
    ) -> CopyRewriter | None:
        """The rewriter for a COPY ... TO STDOUT whose CopyOutResponse is `body`."""
        return self._planner.plan_copy(self._context, statement, body, unmask, mask_with)

    def copy_refusal(self, statement: StatementInfo, unmask: frozenset[str]) -> str | None:
        return self._planner.copy_refusal(self._context, statement, unmask)

    def suspended(self, portal: str, plan: MaskPlan | None) -> None:
        self._suspended[portal] = plan

    def guard(
        self, statements: Sequence[StatementInfo], unmask: frozenset[str]
    ) -> tuple[str, str] | None:
        for statement in statements:
            found = self._planner.guard(self._context, statement, unmask)
            if found is not None:
                return found
        return None

    def schema_changed(self) -> None:
        self._planner.changed(self._context)

    # Free text.

    def scrub_fields(self, type_byte: int, body: memoryview) -> tuple[bytes | None, int]:
        """An ErrorResponse or NoticeResponse with detected values masked, or None when nothing
        was found; and how many values were masked."""
        fields = backend.decode_fields(body)
        changed = False
        found = 0
        for code in _TEXT_FIELDS:
            text = fields.get(code)
            if not text:
                continue
            masked, counts = self._planner.mask_text(text)
            if counts:
                fields[code] = masked
                changed = True
                found += sum(counts.values())
        if not changed:
            return None, 0
        encoded = backend.encode_fields(fields)
        return frame(type_byte, encoded), found

    def scrub_notification(self, body: memoryview) -> bytes | None:
        pid, channel, payload = backend.decode_notification(body)
        masked, counts = self._planner.mask_text(payload)
        if not counts:
            return None
        return backend.encode_notification(pid, channel, masked)


@lru_cache(maxsize=1024)
def _bound(description: bytes, formats: tuple[int, ...]) -> tuple[Column, ...]:
    """A statement's columns in the formats a Bind asked for."""
    return _with_formats(_described(description), formats)


def _with_formats(columns: Sequence[Column], formats: tuple[int, ...]) -> tuple[Column, ...]:
    if not formats:
        return tuple(dataclasses.replace(c, format=0) for c in columns)
    if len(formats) == 1:
        return tuple(dataclasses.replace(c, format=formats[0]) for c in columns)
    return tuple(
        dataclasses.replace(c, format=formats[i] if i < len(formats) else 0)
        for i, c in enumerate(columns)
    )


def masked_counts(plan: MaskPlan | None) -> Mapping[str, int] | None:
    if plan is None:
        return None
    counts = plan.masked_cells()
    return {str(k): v for k, v in counts.items()} if counts else None

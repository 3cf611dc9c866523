"""The pluggable stages and their default implementations.

Until policy, masking and audit have their own engines, the defaults are real but simple:
the decider allows everything, the mask planner never masks, and the audit sink writes one
structured JSON log line per connection and per statement (literals replaced, no secrets).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Protocol

from bastion.pipeline.context import ConnectionContext
from bastion.pipeline.decision import (
    ALLOW_DEFAULT,
    SESSION_DEFAULT,
    Decision,
    SessionDecision,
)
from bastion.pipeline.events import ConnectionEvent, StatementEvent
from bastion.sql.analyze import analyze
from bastion.sql.statement import StatementInfo
from bastion.wire.postgres.backend import Column


class Analyzer(Protocol):
    def analyze(self, sql: str) -> tuple[StatementInfo, ...]: ...


class Decider(Protocol):
    def connect(self, context: ConnectionContext) -> SessionDecision:
        """Whether this connection may proceed, and how to open it upstream."""
        ...

    def decide(self, context: ConnectionContext, statements: Sequence[StatementInfo]) -> Decision:
        """The decision for one client message: all its statements are decided as a whole."""
        ...


class MaskPlan(Protocol):
    """Per-result row rewriting, resolved once per RowDescription."""

    def apply(self, row: memoryview) -> bytes: ...

    def apply_run(self, run: memoryview) -> bytes | None:
        """A run of whole DataRow messages masked at once (one content scan for all of
        them); None when none of them changed."""
        ...

    def masked_cells(self) -> Mapping[str, int]:
        """Cells masked so far in this result, per sensitive class."""
        ...

    def fresh(self) -> MaskPlan:
        """The same plan with its counts at zero, for another result of the same shape."""
        ...


class CopyRewriter(Protocol):
    """Masks the CopyData messages of one COPY ... TO STDOUT."""

    @property
    def plan(self) -> MaskPlan: ...

    def rewrite(self, data: memoryview) -> bytes: ...

    def finish(self) -> None:
        """The COPY ended; raises ProtocolViolation if its data was cut short."""
        ...


class MaskPlanner(Protocol):
    def plan(
        self,
        context: ConnectionContext,
        statement: StatementInfo | None,
        columns: Sequence[Column],
        unmask: frozenset[str] = frozenset(),
        mask_with: str | None = None,
        *,
        shape: Hashable | None = None,
    ) -> MaskPlan | None:
        """None means no column needs work: rows pass through as raw bytes. `unmask` names
        the sensitive classes the policy lets this statement see in clear ("all": every one);
        `mask_with` is one strategy to use for every class instead of each class's own.
        `shape`, when given, stands for `columns` in the planner's cache (their wire bytes:
        cheaper to hash than the decoded columns)."""
        ...

    def changed(self, context: ConnectionContext) -> None:
        """The target's schema changed through this session (DDL ran)."""
        ...

    def guard(
        self, context: ConnectionContext, statement: StatementInfo, unmask: frozenset[str]
    ) -> tuple[str, str] | None:
        """(effect, reason) when the statement would reveal masked values other than through
        its result (a condition, ordering or grouping on a masked column; copying masked
        columns into a table or file): effect is "deny" or "require_approval". None: fine."""
        ...

    def copy_refusal(
        self, context: ConnectionContext, statement: StatementInfo, unmask: frozenset[str]
    ) -> str | None:
        """Why the rows of a COPY ... TO STDOUT could not be masked; None when they can."""
        ...

    def plan_copy(
        self,
        context: ConnectionContext,
        statement: StatementInfo,
        response: bytes | memoryview,
        unmask: frozenset[str] = frozenset(),
        mask_with: str | None = None,
    ) -> CopyRewriter | None:
        """The rewriter of a COPY whose CopyOutResponse is `response`; None: rows pass."""
        ...

    def mask_text(self, text: str) -> tuple[str, Mapping[str, int]]:
        """Free text (error and notice fields, NOTIFY payloads) with what detectors find
        masked, and how many findings per class."""
        ...


class AuditSink(Protocol):
    def connection(self, event: ConnectionEvent) -> None: ...

    def statement(self, event: StatementEvent) -> None: ...


class DurableAuditSink(AuditSink, Protocol):
    """A sink whose statement records can be waited for (the audit record in sync mode)."""

    @property
    def sync(self) -> bool: ...

    def statement_durable(self, event: StatementEvent, on_durable: Callable[[bool], None]) -> None:
        """Record `event`; `on_durable(ok)` is called exactly once, maybe from another thread:
        True once the record is stored, False if it cannot be."""
        ...


class PglastAnalyzer:
    """Analysis with PostgreSQL's grammar, cached by SQL text."""

    def analyze(self, sql: str) -> tuple[StatementInfo, ...]:
        return analyze(sql)


class AllowAllDecider:
    """Allows every connection and statement; for tests and benchmarks of the bare relay."""

    def connect(self, context: ConnectionContext) -> SessionDecision:
        return SESSION_DEFAULT

    def decide(self, context: ConnectionContext, statements: Sequence[StatementInfo]) -> Decision:
        return ALLOW_DEFAULT


class NoMasking:
    """Never masks: for tests and benchmarks of the bare relay."""

    def plan(
        self,
        context: ConnectionContext,
        statement: StatementInfo | None,
        columns: Sequence[Column],
        unmask: frozenset[str] = frozenset(),
        mask_with: str | None = None,
    ) -> MaskPlan | None:
        return None

    def changed(self, context: ConnectionContext) -> None:
        return None

    def guard(
        self, context: ConnectionContext, statement: StatementInfo, unmask: frozenset[str]
    ) -> tuple[str, str] | None:
        return None

    def mask_text(self, text: str) -> tuple[str, Mapping[str, int]]:
        return text, {}

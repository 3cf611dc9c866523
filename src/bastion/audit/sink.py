"""AuditSinkAdapter: the session's AuditSink protocol on top of an AuditWriter.

The session calls `connection(event)` and `statement(event)` on its hot path; the adapter hands
the event to the writer's queue and returns. When the writer refuses it (the queue is full,
usually because the store is down), the adapter raises AuditUnavailable, so the caller refuses
the statement with a clear error instead of running it without a record.
"""

from __future__ import annotations

from bastion.audit.errors import AuditUnavailable
from bastion.audit.writer import AuditWriter, Submission
from bastion.pipeline.events import ConnectionEvent, StatementEvent

_HINT = "the audit store is not accepting records; try again shortly, or ask an administrator"


class AuditSinkAdapter:
    """Implements `bastion.pipeline.stages.AuditSink` with an AuditWriter."""

    def __init__(self, writer: AuditWriter) -> None:
        self.writer = writer

    def connection(self, event: ConnectionEvent) -> None:
        self._submit(event)

    def statement(self, event: StatementEvent) -> None:
        self._submit(event)

    def _submit(self, event: Submission) -> None:
        if self.writer.mode == "sync":
            accepted = self.writer.submit(event, _ignore)
        else:
            accepted = self.writer.submit(event)
        if not accepted:
            raise AuditUnavailable(
                "the audit record is not accepting records (its buffer is full)", hint=_HINT
            )


def _ignore(durable: bool) -> None:
    """Sync mode through the plain sink: refusal is reported by submit's result instead."""

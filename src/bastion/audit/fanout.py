"""FanoutSink: hands every event to several sinks (the JSON log lines and the audit record).

It also answers the two questions the relay asks of its sink: does anyone record statements,
and can the record accept more right now. A statement is only refused for a full record before
it runs; an event refused after its statement ran (the buffer filled in between) is still in the
JSON log, and the refusal itself is logged as an error: nothing disappears silently.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from bastion.audit.errors import AuditUnavailable
from bastion.audit.sink import AuditSinkAdapter
from bastion.audit.writer import AuditWriter
from bastion.pipeline.events import ConnectionEvent, StatementEvent
from bastion.pipeline.stages import AuditSink

log = logging.getLogger("bastion.audit")


class FanoutSink:
    def __init__(self, sinks: Sequence[AuditSink], writer: AuditWriter | None = None) -> None:
        self._sinks = tuple(sinks)
        self._writer = writer

    @property
    def records_statements(self) -> bool:
        return any(getattr(sink, "records_statements", True) for sink in self._sinks)

    @property
    def accepting(self) -> bool:
        return self._writer is None or self._writer.accepting

    @property
    def sync(self) -> bool:
        """True when statement results must wait for their audit record (sync mode)."""
        return self._writer is not None and self._writer.mode == "sync"

    def statement_durable(self, event: StatementEvent, on_durable: Callable[[bool], None]) -> None:
        """The event goes to every sink; the audit record's writer calls `on_durable` once the
        record is committed (or with False when it refuses or fails it)."""
        writer = self._writer
        for sink in self._sinks:
            if isinstance(sink, AuditSinkAdapter):
                continue
            self._deliver(sink, "statement", event)
        if writer is None:
            on_durable(True)
            return
        writer.submit(event, on_durable)

    def connection(self, event: ConnectionEvent) -> None:
        for sink in self._sinks:
            self._deliver(sink, "connection", event)

    def statement(self, event: StatementEvent) -> None:
        for sink in self._sinks:
            self._deliver(sink, "statement", event)

    @staticmethod
    def _deliver(sink: AuditSink, kind: str, event: ConnectionEvent | StatementEvent) -> None:
        try:
            if kind == "statement":
                sink.statement(event)  # type: ignore[arg-type]
            else:
                sink.connection(event)  # type: ignore[arg-type]
        except AuditUnavailable as exc:
            log.error(
                "audit record refused an event",
                extra={
                    "fields": {"event": kind, "session_id": event.session_id, "error": exc.message}
                },
            )

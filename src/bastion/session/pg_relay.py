"""The PostgreSQL relay state machine (sans-IO): messages in, decisions and events out.

After authentication, every client message and every non-row server message passes through
`RelayMachine`. It keeps the queue of requests the server has not answered yet, so each
response (ParseComplete, RowDescription, CommandComplete, ErrorResponse, ReadyForQuery...) is
attributed to the request and statement it belongs to; later stages rely on that to pick the
mask plan for a result and to record each statement's outcome. A server reply that does not fit
the queue means Bastion no longer knows what a result belongs to: that is a desync, and the
session is closed rather than guessed at.

It never touches sockets; the driver feeds it and acts on what it returns.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from bastion.errors import ProtocolViolation
from bastion.pipeline.context import ConnectionContext
from bastion.pipeline.decision import Allow, Decision
from bastion.pipeline.events import StatementEvent
from bastion.pipeline.stages import Analyzer, AuditSink, Decider
from bastion.sql.statement import StatementInfo
from bastion.wire.postgres import backend, frontend
from bastion.wire.postgres.codes import (
    B_BIND_COMPLETE,
    B_CLOSE_COMPLETE,
    B_COMMAND_COMPLETE,
    B_COPY_BOTH_RESPONSE,
    B_COPY_DONE,
    B_COPY_IN_RESPONSE,
    B_COPY_OUT_RESPONSE,
    B_EMPTY_QUERY_RESPONSE,
    B_ERROR_RESPONSE,
    B_FUNCTION_CALL_RESPONSE,
    B_NO_DATA,
    B_NOTICE_RESPONSE,
    B_NOTIFICATION_RESPONSE,
    B_PARAMETER_DESCRIPTION,
    B_PARAMETER_STATUS,
    B_PARSE_COMPLETE,
    B_PORTAL_SUSPENDED,
    B_READY_FOR_QUERY,
    B_ROW_DESCRIPTION,
    F_BIND,
    F_CLOSE,
    F_COPY_DATA,
    F_COPY_DONE,
    F_COPY_FAIL,
    F_DESCRIBE,
    F_EXECUTE,
    F_FLUSH,
    F_FUNCTION_CALL,
    F_PARSE,
    F_QUERY,
    F_SYNC,
    F_TERMINATE,
    TX_IDLE,
)
from bastion.wire.postgres.errors import WireFormatError

# Command tags whose last word is a row count.
_COUNTED_TAGS = frozenset(
    {"SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "COPY", "FETCH", "MOVE"}
)
# Requests that end at the next ReadyForQuery.
_ENDS_AT_READY = frozenset({F_SYNC, F_QUERY, F_FUNCTION_CALL})


class RelayDesync(ProtocolViolation):
    """The server answered something Bastion did not expect at this point."""


@dataclass(slots=True)
class _Pending:
    """A request the server has not fully answered yet."""

    op: int
    statements: tuple[StatementInfo, ...] = ()
    index: int = 0  # the statement of a simple Query now running
    started: float = 0.0
    described_statement: bool = False  # Describe 'S' answers ParameterDescription first
    decision: Decision = field(default_factory=Allow)


@dataclass(slots=True)
class _Prepared:
    statements: tuple[StatementInfo, ...]


@dataclass(frozen=True, slots=True)
class Forward:
    """Relay the client message to the server unchanged."""


@dataclass(frozen=True, slots=True)
class Terminate:
    """Relay the Terminate message, then close both sides."""


FORWARD = Forward()
TERMINATE = Terminate()
ClientVerdict = Forward | Terminate


class RelayMachine:
    """Relay-phase state of one client connection."""

    def __init__(
        self,
        context: ConnectionContext,
        analyzer: Analyzer,
        decider: Decider,
        audit: AuditSink,
    ) -> None:
        self.context = context
        self._analyzer = analyzer
        self._decider = decider
        self._audit = audit
        self._pending: deque[_Pending] = deque()
        self._prepared: dict[str, _Prepared] = {}
        self._portals: dict[str, tuple[StatementInfo, ...]] = {}
        self._copy_in = False
        self.transaction_status = TX_IDLE
        self.statement_count = 0

    # Client -> server.

    def from_client(self, type_byte: int, body: memoryview) -> ClientVerdict:
        """Account for one client message; raise ProtocolViolation for garbage."""
        try:
            return self._from_client(type_byte, body)
        except WireFormatError as exc:
            raise ProtocolViolation(f"invalid {chr(type_byte)!r} message: {exc}") from exc

    def _from_client(self, type_byte: int, body: memoryview) -> ClientVerdict:
        if type_byte == F_COPY_DATA:
            return FORWARD
        now = time.perf_counter()
        if type_byte == F_QUERY:
            sql = frontend.decode_query(body)
            infos = self._analyzer.analyze(sql)
            decision = self._decider.decide(self.context, infos)
            self._pending.append(_Pending(F_QUERY, infos, started=now, decision=decision))
        elif type_byte == F_PARSE:
            parse = frontend.decode_parse(body)
            infos = self._analyzer.analyze(parse.query)
            decision = self._decider.decide(self.context, infos)
            self._prepared[parse.statement] = _Prepared(infos)
            self._pending.append(_Pending(F_PARSE, infos, started=now, decision=decision))
        elif type_byte == F_BIND:
            bind = frontend.decode_bind(body)
            prepared = self._prepared.get(bind.statement)
            self._portals[bind.portal] = prepared.statements if prepared else ()
            self._pending.append(_Pending(F_BIND))
        elif type_byte == F_EXECUTE:
            execute = frontend.decode_execute(body)
            infos = self._portals.get(execute.portal, ())
            self._pending.append(_Pending(F_EXECUTE, infos, started=now))
        elif type_byte == F_DESCRIBE:
            describe = frontend.decode_describe(body)
            self._pending.append(_Pending(F_DESCRIBE, described_statement=describe.kind == "S"))
        elif type_byte == F_CLOSE:
            close = frontend.decode_close(body)
            if close.kind == "S":
                self._prepared.pop(close.name, None)
            else:
                self._portals.pop(close.name, None)
            self._pending.append(_Pending(F_CLOSE))
        elif type_byte in (F_SYNC, F_FLUSH):
            # During COPY FROM STDIN the server ignores Sync and Flush: no reply will come.
            if type_byte == F_SYNC and not self._copy_in:
                self._pending.append(_Pending(F_SYNC))
        elif type_byte in (F_COPY_DONE, F_COPY_FAIL):
            self._copy_in = False
        elif type_byte == F_FUNCTION_CALL:
            self._pending.append(_Pending(F_FUNCTION_CALL, started=now))
        elif type_byte == F_TERMINATE:
            return TERMINATE
        else:
            raise ProtocolViolation(f"unexpected message type {chr(type_byte)!r} from client")
        return FORWARD

    # Server -> client (every message but DataRow and CopyData).

    def from_server(self, type_byte: int, body: memoryview) -> None:
        try:
            self._from_server(type_byte, body)
        except WireFormatError as exc:
            raise RelayDesync(f"invalid {chr(type_byte)!r} message from the server: {exc}") from exc

    def _from_server(self, type_byte: int, body: memoryview) -> None:
        if type_byte in (
            B_NOTICE_RESPONSE,
            B_NOTIFICATION_RESPONSE,
            B_PARAMETER_STATUS,
            B_COPY_DONE,
        ):
            return
        if type_byte == B_READY_FOR_QUERY:
            self.transaction_status = backend.decode_ready_for_query(body)
            self._ready()
            return
        if type_byte == B_ERROR_RESPONSE:
            self._error(body)
            return
        head = self._head(type_byte)
        op = head.op
        if type_byte == B_ROW_DESCRIPTION:
            if op == F_DESCRIBE:
                self._pending.popleft()
            elif op not in (F_QUERY, F_EXECUTE):
                self._desync(type_byte, op)
        elif type_byte in (B_COMMAND_COMPLETE, B_EMPTY_QUERY_RESPONSE):
            tag = backend.decode_command_complete(body) if type_byte == B_COMMAND_COMPLETE else ""
            if op == F_QUERY:
                self._statement_done(head, "ok", tag=tag)
            elif op == F_EXECUTE:
                self._pending.popleft()
                self._statement_done(head, "ok", tag=tag)
            else:
                self._desync(type_byte, op)
        elif type_byte in (B_COPY_IN_RESPONSE, B_COPY_OUT_RESPONSE, B_COPY_BOTH_RESPONSE):
            if op not in (F_QUERY, F_EXECUTE):
                self._desync(type_byte, op)
            if type_byte == B_COPY_IN_RESPONSE:
                self._copy_in = True
        elif type_byte == B_PARSE_COMPLETE:
            self._expect_pop(op, F_PARSE, type_byte)
        elif type_byte == B_BIND_COMPLETE:
            self._expect_pop(op, F_BIND, type_byte)
        elif type_byte == B_CLOSE_COMPLETE:
            self._expect_pop(op, F_CLOSE, type_byte)
        elif type_byte == B_NO_DATA:
            self._expect_pop(op, F_DESCRIBE, type_byte)
        elif type_byte == B_PARAMETER_DESCRIPTION:
            if op != F_DESCRIBE or not head.described_statement:
                self._desync(type_byte, op)
        elif type_byte == B_PORTAL_SUSPENDED:
            self._expect_pop(op, F_EXECUTE, type_byte)
            self._statement_done(head, "suspended")
        elif type_byte == B_FUNCTION_CALL_RESPONSE:
            if op != F_FUNCTION_CALL:
                self._desync(type_byte, op)
        else:
            self._desync(type_byte, op)

    def _head(self, type_byte: int) -> _Pending:
        if not self._pending:
            raise RelayDesync(f"server sent {chr(type_byte)!r} with no request outstanding")
        return self._pending[0]

    def _expect_pop(self, op: int, expected: int, type_byte: int) -> None:
        if op != expected:
            self._desync(type_byte, op)
        self._pending.popleft()

    def _desync(self, type_byte: int, op: int) -> None:
        raise RelayDesync(
            f"server sent {chr(type_byte)!r} while Bastion expected the answer to {chr(op)!r}"
        )

    def _error(self, body: memoryview) -> None:
        fields = backend.decode_fields(body)
        sqlstate = fields.get("C", "")
        if not self._pending:
            return  # an asynchronous error, e.g. FATAL on administrator shutdown
        head = self._pending[0]
        if head.op == F_QUERY:
            self._statement_done(head, "error", sqlstate=sqlstate)
            # The rest of the Query's statements will not run.
            while head.index < len(head.statements):
                self._statement_done(head, "skipped")
            return
        if head.op in _ENDS_AT_READY:
            return  # e.g. a COMMIT failing at Sync; ReadyForQuery follows
        # Extended protocol: the server now skips everything up to the next Sync.
        first = True
        while self._pending and self._pending[0].op not in _ENDS_AT_READY:
            entry = self._pending.popleft()
            if entry.op == F_EXECUTE:
                self._statement_done(entry, "error" if first else "skipped", sqlstate=sqlstate)
            first = False
        self._copy_in = False

    def _ready(self) -> None:
        while self._pending:
            entry = self._pending.popleft()
            if entry.op in _ENDS_AT_READY:
                while entry.op == F_QUERY and entry.index < len(entry.statements):
                    self._statement_done(entry, "skipped")
                return
        # A ReadyForQuery with nothing outstanding only follows the end of a COPY in some
        # servers' error paths; there is nothing to attribute.

    def _statement_done(
        self, entry: _Pending, outcome: str, *, tag: str = "", sqlstate: str = ""
    ) -> None:
        now = time.perf_counter()
        info: StatementInfo | None = None
        if entry.op == F_QUERY:
            if entry.index < len(entry.statements):
                info = entry.statements[entry.index]
            entry.index += 1
        elif entry.statements:
            info = entry.statements[0]
        self.statement_count += 1
        decision = entry.decision
        ctx = self.context
        self._audit.statement(
            StatementEvent(
                session_id=ctx.session_id,
                user=ctx.identity.name,
                target=ctx.target,
                protocol="simple" if entry.op == F_QUERY else "extended",
                kind=info.kind if info else "unknown",
                statement=info.normalized if info else "",
                fingerprint=info.fingerprint if info else "",
                decision="allow" if isinstance(decision, Allow) else "deny",
                rule=decision.rule,
                outcome=outcome,
                sqlstate=sqlstate,
                command_tag=tag,
                rows=_row_count(tag),
                duration_ms=round((now - entry.started) * 1000.0, 3),
            )
        )
        entry.started = now


def _row_count(tag: str) -> int | None:
    word, _, rest = tag.partition(" ")
    if word not in _COUNTED_TAGS or not rest:
        return None
    last = rest.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else None

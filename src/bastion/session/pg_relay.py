"""The PostgreSQL relay state machine (sans-IO): messages in, decisions and events out.

After authentication, every client message and every non-row server message passes through
`RelayMachine`. It keeps the queue of requests the server has not answered yet, so each
response (ParseComplete, RowDescription, CommandComplete, ErrorResponse, ReadyForQuery...) is
attributed to the request and statement it belongs to; later stages rely on that to pick the
mask plan for a result and to record each statement's outcome. A server reply that does not fit
the queue means Bastion no longer knows what a result belongs to: that is a desync, and the
session is closed rather than guessed at.

Enforcement happens here too. A denied statement never reaches the server: Bastion sends the
server a statement that is certain to fail in its place (so the server's transaction fails
exactly when the client's does, and a later COMMIT cannot commit the work around the denial),
drops the replies to what it injected, and replaces the resulting error with its own, which
names the rule. `max_rows` obligations truncate results: rows past the limit are dropped and
the command tag and a notice say so.

It never touches sockets; the driver feeds it and acts on what it returns.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, cast

from bastion.errors import ProtocolViolation
from bastion.pipeline.context import ConnectionContext
from bastion.pipeline.decision import (
    ALLOW_DEFAULT,
    Allow,
    Decision,
    Deny,
    RequireApproval,
)
from bastion.pipeline.events import StatementEvent
from bastion.pipeline.readonly import may_write
from bastion.pipeline.stages import (
    Analyzer,
    AuditSink,
    CopyRewriter,
    Decider,
    DurableAuditSink,
    MaskPlan,
    MaskPlanner,
)
from bastion.session.result_masking import ResultMasking, masked_counts
from bastion.sql.session_settings import NOOP_RESET, NOOP_SET, reason_value, sets_reason
from bastion.sql.statement import StatementInfo
from bastion.wire.postgres import backend, frontend
from bastion.wire.postgres.binary_values import render_binary
from bastion.wire.postgres.codes import (
    B_BIND_COMPLETE,
    B_CLOSE_COMPLETE,
    B_COMMAND_COMPLETE,
    B_COPY_BOTH_RESPONSE,
    B_COPY_DATA,
    B_COPY_DONE,
    B_COPY_IN_RESPONSE,
    B_COPY_OUT_RESPONSE,
    B_DATA_ROW,
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
from bastion.wire.postgres.framing import cstr, frame, message_bodies

# Server messages the relay may forward without showing them to the machine.
SKIP_ROWS = frozenset({B_DATA_ROW, B_COPY_DATA})
SKIP_COPY_DATA = frozenset({B_COPY_DATA})
SKIP_NOTHING: frozenset[int] = frozenset()
# Command tags whose last word is a row count.
_COUNTED_TAGS = frozenset(
    {"SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "COPY", "FETCH", "MOVE"}
)
# Statement kinds after which the target's catalog may differ: masking reloads it.
_SCHEMA_CHANGES = ("create_", "alter_", "drop_", "comment")
# Statement outcomes after which the server ran something: in sync audit mode the client sees
# them only once their record is stored.
_RAN = frozenset({"ok", "error", "suspended"})
# Client messages that make the server run something: each needs room for its audit record.
_RUNS_STATEMENTS = frozenset({F_QUERY, F_EXECUTE, F_FUNCTION_CALL})
# Requests that end at the next ReadyForQuery.
_ENDS_AT_READY = frozenset({F_SYNC, F_QUERY, F_FUNCTION_CALL})
# What Bastion sends the server in place of a denied statement. It fails at planning time
# (constant folding of a division by zero), never reads a table, and is schema-qualified so
# no search_path can make it succeed.
INJECTED_FAILURE = "SELECT pg_catalog.int4div(1, 0) AS bastion_denied"
DENIAL_SQLSTATE = "42501"
_NO_AUDIT_ROOM = Deny(
    "audit.unavailable",
    "the audit record cannot accept more records right now",
    hint="retry in a moment; an operator should check the audit store",
)


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
    decision: Decision = ALLOW_DEFAULT
    injected: bool = False  # Bastion sent it; the client must not see its replies
    denial: bytes | None = None  # the error the client gets instead of the server's
    max_rows: int | None = None
    rows: int = 0
    protocol: str = "simple"
    approval_id: int | None = None
    statement_name: str | None = None  # Describe 'S' of a statement that needs approval
    decide_seconds: float = 0.0  # Bastion's analysis and decision for it
    mask_plan: MaskPlan | None = None  # how this result's rows are masked
    copy_out: CopyRewriter | None = None  # how a COPY ... TO STDOUT's rows are masked
    portal: str | None = None  # Execute: the portal it runs
    describe_kind: str = ""  # Describe: "S" or "P", when masking tracks its answer
    shape_for: _Pending | None = None  # a Describe Bastion sent for this Execute
    params: tuple[str | None, ...] = ()  # Execute: its portal's parameters, when recorded
    unmasked: bool = False  # the result was read under a policy grant to see values in clear


# Requests whose replies carry no per-request state share one immutable-in-practice entry:
# nothing mutates them (rows stays 0: they never own a result), and the hot path allocates less.
_PARSE = _Pending(F_PARSE)
_BIND = _Pending(F_BIND)
_CLOSE = _Pending(F_CLOSE)
_SYNC = _Pending(F_SYNC)
_DESCRIBE_STATEMENT = _Pending(F_DESCRIBE, described_statement=True)
_DESCRIBE_PORTAL = _Pending(F_DESCRIBE)


@dataclass(slots=True)
class _Prepared:
    statements: tuple[StatementInfo, ...]
    decision: Decision
    text: str = ""  # kept only for statements that need approval
    params: tuple[str | None, ...] = ()  # a portal's parameters, likewise
    param_types: tuple[int, ...] = ()
    approval_id: int | None = None
    decide_seconds: float = 0.0  # the analysis and decision at Parse, reported once


@dataclass(frozen=True, slots=True)
class Recording:
    """What statement records keep beyond the normalized text (audit.statement_text,
    audit.parameters); `scrub` masks what the detectors find in a text."""

    full_text: bool
    parameters: bool
    scrub: Callable[[str], str]


@dataclass(frozen=True, slots=True)
class Forward:
    """Relay the client message to the server unchanged."""


@dataclass(frozen=True, slots=True)
class Terminate:
    """Relay the Terminate message, then close both sides."""


@dataclass(frozen=True, slots=True)
class Substitute:
    """Send these bytes to the server instead of the client's message."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Hold:
    """Stop here: the message (and everything after it) waits for the decision on
    `RelayMachine.held`. The driver calls `resolve()` and then shows the same message again."""


@dataclass(frozen=True, slots=True)
class HeldStatement:
    """A statement waiting for approval, with what approvers must see."""

    decision: RequireApproval
    statements: tuple[StatementInfo, ...]
    text: str
    params: tuple[str | None, ...]
    protocol: str  # "simple" or "extended"


FORWARD = Forward()
TERMINATE = Terminate()
HOLD = Hold()
ClientVerdict = Forward | Terminate | Substitute | Hold

_INJECTED_QUERY = frontend.encode_query(INJECTED_FAILURE)
_INJECTED_EXTENDED = (
    frontend.encode_parse("", INJECTED_FAILURE)
    + frontend.encode_bind("", "")
    + frontend.encode_execute("", 0)
    + frontend.encode_flush()
)
_FUNCTION_CALL = StatementInfo(
    kind="function_call", text="", normalized="", fingerprint="", flags=frozenset({"fastpath"})
)


def denial_error(decision: Deny) -> bytes:
    """The ErrorResponse a client gets for a statement Bastion refused."""
    return backend.encode_error(
        decision.sqlstate, f"bastion: {decision.rule}: {decision.reason}", hint=decision.hint
    )


def render_params(bind: frontend.Bind, types: tuple[int, ...]) -> tuple[str | None, ...]:
    """Bind parameters as approvers read them: text as sent, binary values decoded by the
    types the client declared at Parse (hex when the type is unknown)."""
    formats = bind.param_formats
    rendered: list[str | None] = []
    for index, value in enumerate(bind.params):
        if value is None:
            rendered.append(None)
            continue
        code = formats[0] if len(formats) == 1 else formats[index] if formats else 0
        if code == 0:
            rendered.append(value.decode("utf-8", "replace"))
        else:
            rendered.append(render_binary(types[index] if index < len(types) else 0, value))
    return tuple(rendered)


class RelayMachine:
    """Relay-phase state of one client connection."""

    def __init__(
        self,
        context: ConnectionContext,
        analyzer: Analyzer,
        decider: Decider,
        audit: AuditSink,
        *,
        read_only: bool = False,
        masker: MaskPlanner | None = None,
        recording: Recording | None = None,
    ) -> None:
        self.context = context
        self._recording = recording
        self._masking = ResultMasking(masker, context) if masker is not None else None
        self.read_only = read_only
        self._analyzer = analyzer
        self._decider = decider
        self._audit = audit
        self._record_statements: bool = getattr(audit, "records_statements", True)
        # Sync mode: each statement's result waits until its audit record is durable.
        self._durable_sink: DurableAuditSink | None = (
            cast(DurableAuditSink, audit) if getattr(audit, "sync", False) else None
        )
        self.on_durable: Callable[[bool], None] | None = None  # set by the driver
        self.undurable = 0  # records submitted and not yet durable
        self.hold_output = False  # the message just shown must wait for durability
        # The audit record had no room: the statement waits (the driver resolves it).
        self.waiting_for_audit = False
        self._pending: deque[_Pending] = deque()
        self._prepared: dict[str, _Prepared] = {}
        self._portals: dict[str, _Prepared] = {}
        self._copy_in = False
        self.transaction_status = TX_IDLE
        self.statement_count = 0
        # Approvals: the statement waiting for a decision, and the decision once it came.
        self.held: HeldStatement | None = None
        self._resolution: Decision | None = None
        self._resolution_id: int | None = None
        self.reason = ""  # the requester's SET bastion.reason

    @property
    def inspect_rows(self) -> bool:
        """True while the current result needs each DataRow shown to `from_server`."""
        return self.server_skip_types is not SKIP_ROWS

    @property
    def server_skip_types(self) -> frozenset[int]:
        """The server messages the relay may pass without showing them to `from_server`:
        rows, unless the current result is masked or counted (COPY data too when masked)."""
        if not self._pending:
            return SKIP_ROWS
        head = self._pending[0]
        if head.copy_out is not None:
            return SKIP_NOTHING
        if head.mask_plan is not None or head.max_rows is not None:
            return SKIP_COPY_DATA
        return SKIP_ROWS

    def resolve(self, decision: Allow | Deny, approval_id: int | None = None) -> None:
        """The decision for the held statement; its message is shown again right after."""
        self.held = None
        self._resolution = decision
        self._resolution_id = approval_id

    # Client -> server.

    def from_client(self, type_byte: int, body: memoryview) -> ClientVerdict:
        """Account for one client message; raise ProtocolViolation for garbage."""
        try:
            return self._from_client(type_byte, body)
        except WireFormatError as exc:
            raise ProtocolViolation(f"invalid {chr(type_byte)!r} message: {exc}") from exc

    def _decide(self, infos: tuple[StatementInfo, ...]) -> Decision:
        resolution = self._resolution
        if resolution is not None:
            self._resolution = None
            if isinstance(resolution, Allow) and not self._audit_has_room():
                # An approved statement whose record could not be kept does not run either.
                return _NO_AUDIT_ROOM
            return self._checked(resolution, infos)
        return self._checked(self._decider.decide(self.context, infos), infos)

    def _audit_has_room(self) -> bool:
        return bool(getattr(self._audit, "accepting", True))

    def _must_wait_for_audit(self) -> bool:
        """Whether a new statement must wait for room in the audit record first."""
        if self._resolution is not None or self._audit_has_room():
            return False
        self.waiting_for_audit = True
        return True

    def _checked(self, decision: Decision, infos: tuple[StatementInfo, ...]) -> Decision:
        if (
            isinstance(decision, Allow)
            and decision.obligations.max_rows is not None
            and _copies_out(infos)
        ):
            # COPY's rows are not a result that can be cut short with a notice and a tag.
            return Deny(
                decision.rule,
                f"COPY ... TO STDOUT cannot be limited to {decision.obligations.max_rows} rows",
                hint="SELECT the rows with a LIMIT instead, or ask for a rule without max_rows",
            )
        if self._masking is not None and isinstance(decision, Allow):
            for info in _copies_out(infos):
                refusal = self._masking.copy_refusal(info, decision.obligations.unmask)
                if refusal is not None:
                    return Deny(
                        "masking.copy_out",
                        refusal,
                        hint="use COPY with FORMAT text or csv, or SELECT the rows (masked on "
                        "the way out), or ask for a policy rule that unmasks them for you",
                    )
        if self._masking is not None and isinstance(decision, Allow):
            guarded = self._masking.guard(infos, decision.obligations.unmask)
            if guarded is not None:
                effect, reason = guarded
                if effect == "require_approval":
                    return RequireApproval(
                        "masking.inference", f"{reason} (masked values need approval)"
                    )
                return Deny(
                    "masking.inference",
                    f"this statement could reveal masked values: {reason}",
                    hint="compare masked columns only for equality with a value, or ask for a "
                    "policy rule that unmasks them for you",
                )
        if (
            isinstance(decision, Allow)
            and (self.read_only or decision.obligations.read_only)
            and any(may_write(info) for info in infos)
        ):
            rule = "session.read_only" if self.read_only else decision.rule
            return Deny(
                rule,
                "this session is read-only and the statement may change data",
                hint="connect with an identity or rule that allows writes",
            )
        return decision

    def _from_client(self, type_byte: int, body: memoryview) -> ClientVerdict:
        if type_byte == F_COPY_DATA:
            return FORWARD
        now = time.perf_counter()
        if type_byte in _RUNS_STATEMENTS and self._must_wait_for_audit():
            return HOLD
        if type_byte == F_QUERY:
            text = frontend.decode_query(body)
            infos = self._analyzer.analyze(text)
            if len(infos) == 1 and sets_reason(infos[0]):
                return self._set_reason(text, infos, now)
            decision = self._decide(infos)
            if isinstance(decision, RequireApproval):
                self.held = HeldStatement(decision, infos, text, (), "simple")
                return HOLD
            entry = _Pending(F_QUERY, infos, started=now, decision=decision)
            entry.approval_id, self._resolution_id = self._resolution_id, None
            entry.decide_seconds = time.perf_counter() - now
            self._pending.append(entry)
            if not isinstance(decision, Allow):
                entry.denial = denial_error(decision)
                return Substitute(_INJECTED_QUERY)
            entry.max_rows = decision.obligations.max_rows
        elif type_byte == F_PARSE:
            parse = frontend.decode_parse(body)
            infos = self._analyzer.analyze(parse.query)
            if len(infos) == 1 and sets_reason(infos[0]):
                value = reason_value(parse.query)
                if value is not None:
                    self.reason = value
                    noop = NOOP_RESET if infos[0].kind == "reset" else NOOP_SET
                    self._prepared[parse.statement] = _Prepared(infos, ALLOW_DEFAULT)
                    self._pending.append(_PARSE)
                    return Substitute(frontend.encode_parse(parse.statement, noop))
            decision = self._decide(infos)
            if isinstance(decision, Deny):
                return self._deny_extended(infos, decision, now)
            # A statement that needs approval is prepared but waits at Execute, where its
            # parameters are known: approvers must see exactly what would run.
            if isinstance(decision, RequireApproval):
                self._prepared[parse.statement] = _Prepared(
                    infos, decision, parse.query, param_types=parse.param_types
                )
            else:
                self._prepared[parse.statement] = _Prepared(
                    infos,
                    decision,
                    param_types=parse.param_types if self._records_parameters else (),
                    decide_seconds=time.perf_counter() - now,
                )
            self._pending.append(_PARSE)
        elif type_byte == F_BIND:
            if self._masking is not None:
                portal_name, statement_name, formats = frontend.decode_bind_routing(body)
                self._masking.bound(portal_name, statement_name, formats)
            else:
                portal_name, statement_name = frontend.decode_bind_names(body)
            prepared = self._prepared.get(statement_name)
            if prepared is not None:
                if isinstance(prepared.decision, RequireApproval) or self._records_parameters:
                    params = render_params(frontend.decode_bind(body), prepared.param_types)
                    prepared = _Prepared(
                        prepared.statements,
                        prepared.decision,
                        prepared.text,
                        params,
                        prepared.param_types,
                        decide_seconds=prepared.decide_seconds,
                    )
                self._portals[portal_name] = prepared
            else:
                self._portals.pop(portal_name, None)
            self._pending.append(_BIND)
        elif type_byte == F_EXECUTE:
            execute = frontend.decode_execute(body)
            portal = self._portals.get(execute.portal)
            entry = _Pending(F_EXECUTE, started=now, protocol="extended")
            if portal is not None and isinstance(portal.decision, RequireApproval):
                held = self._execute_held(execute.portal, portal, now)
                if held is not None:
                    return held
                portal = self._portals[execute.portal]
            elif self._resolution is not None:
                # The audit record had no room in time: this Execute does not run.
                refusal, self._resolution = self._resolution, None
                if isinstance(refusal, Deny):
                    return self._deny_extended(portal.statements if portal else (), refusal, now)
            if portal is not None:
                entry.statements, entry.decision = portal.statements, portal.decision
                entry.approval_id = portal.approval_id
                entry.decide_seconds, portal.decide_seconds = portal.decide_seconds, 0.0
                entry.params = portal.params
                if isinstance(portal.decision, Allow):
                    entry.max_rows = portal.decision.obligations.max_rows
            if self._masking is not None:
                return self._execute_masked(execute, entry)
            self._pending.append(entry)
        elif type_byte == F_DESCRIBE:
            describe = frontend.decode_describe(body)
            if self._masking is not None:
                entry = _Pending(F_DESCRIBE, described_statement=describe.kind == "S")
                entry.statement_name, entry.describe_kind = describe.name, describe.kind
                self._pending.append(entry)
            elif describe.kind != "S":
                self._pending.append(_DESCRIBE_PORTAL)
            elif self._needs_types(describe.name):
                # The server's answer gives the parameter types the client left unspecified:
                # approvers then see binary parameters decoded.
                entry = _Pending(F_DESCRIBE, described_statement=True)
                entry.statement_name = describe.name
                self._pending.append(entry)
            else:
                self._pending.append(_DESCRIBE_STATEMENT)
        elif type_byte == F_CLOSE:
            close = frontend.decode_close(body)
            if self._masking is not None:
                self._masking.closed(close.kind, close.name)
            if close.kind == "S":
                self._prepared.pop(close.name, None)
            else:
                self._portals.pop(close.name, None)
            self._pending.append(_CLOSE)
        elif type_byte in (F_SYNC, F_FLUSH):
            # During COPY FROM STDIN the server ignores Sync and Flush: no reply will come.
            if type_byte == F_SYNC and not self._copy_in:
                self._pending.append(_SYNC)
        elif type_byte in (F_COPY_DONE, F_COPY_FAIL):
            self._copy_in = False
        elif type_byte == F_FUNCTION_CALL:
            # A fast-path call names a function by OID, out of reach of SQL analysis; the
            # policy decides it as the statement kind `function_call`.
            infos = (_FUNCTION_CALL,)
            decision = self._decide(infos)
            if isinstance(decision, RequireApproval):
                decision = Deny(
                    decision.rule,
                    f"{decision.reason}; fast-path function calls cannot be held for approval",
                    hint="call the function from SQL (SELECT ...) so it can be approved",
                )
            entry = _Pending(
                F_FUNCTION_CALL, infos, started=now, decision=decision, protocol="function"
            )
            self._pending.append(entry)
            if not isinstance(decision, Allow):
                entry.denial = denial_error(decision)
                return Substitute(_INJECTED_QUERY)
        elif type_byte == F_TERMINATE:
            return TERMINATE
        else:
            raise ProtocolViolation(f"unexpected message type {chr(type_byte)!r} from client")
        return FORWARD

    def _execute_masked(self, execute: frontend.Execute, entry: _Pending) -> ClientVerdict:
        """Give the Execute its mask plan; ask the server for the portal's shape first when
        the client never described it."""
        masking = self._masking
        assert masking is not None
        entry.portal = execute.portal
        entry.unmasked = bool(_unmask(entry.decision))
        info = entry.statements[0] if entry.statements else None
        if masking.knows_portal(execute.portal):
            entry.mask_plan = masking.for_execute(
                execute.portal, info, _unmask(entry.decision), _mask_with(entry.decision)
            )
            self._pending.append(entry)
            return FORWARD
        described = self._describe_pending_for(execute.portal)
        if described is not None:
            # The client described the portal just before (libpq's Bind, Describe, Execute):
            # its answer arrives before the rows and gives this Execute its plan.
            described.shape_for = entry
            self._pending.append(entry)
            return FORWARD
        describe = _Pending(F_DESCRIBE, injected=True)
        describe.statement_name, describe.describe_kind = execute.portal, "P"
        describe.shape_for = entry
        self._pending.append(describe)
        self._pending.append(entry)
        return Substitute(
            frontend.encode_describe("P", execute.portal)
            + frontend.encode_execute(execute.portal, execute.max_rows)
        )

    def _describe_pending_for(self, portal: str) -> _Pending | None:
        """The client's own Describe of `portal`, sent since its last Bind and not answered
        yet; None when there is none (a Bind in between may have replaced the portal)."""
        for entry in reversed(self._pending):
            if entry.op == F_BIND:
                return None
            if entry.op == F_DESCRIBE and entry.describe_kind == "P":
                return entry if entry.statement_name == portal else None
        return None

    def _described(self, head: _Pending, body: memoryview | None) -> None:
        """A Describe's answer (RowDescription, or NoData when body is None)."""
        masking = self._masking
        if masking is None or head.statement_name is None or not head.describe_kind:
            return
        if head.describe_kind == "S":
            masking.described_statement(head.statement_name, body)
            return
        masking.described_portal(head.statement_name, body)
        target = head.shape_for
        if target is not None:
            info = target.statements[0] if target.statements else None
            target.mask_plan = masking.for_execute(
                head.statement_name, info, _unmask(target.decision), _mask_with(target.decision)
            )

    @property
    def _records_parameters(self) -> bool:
        return self._recording is not None and self._recording.parameters

    def _needs_types(self, name: str) -> bool:
        prepared = self._prepared.get(name)
        return prepared is not None and (
            isinstance(prepared.decision, RequireApproval) or self._records_parameters
        )

    def _learn_types(self, name: str, body: memoryview) -> None:
        prepared = self._prepared.get(name)
        if prepared is None:
            return
        declared = prepared.param_types
        described = backend.decode_parameter_description(body)
        prepared.param_types = tuple(
            declared[i] if i < len(declared) and declared[i] else oid
            for i, oid in enumerate(described)
        )

    def _set_reason(self, text: str, infos: tuple[StatementInfo, ...], now: float) -> ClientVerdict:
        value = reason_value(text)
        if value is None:
            return FORWARD  # not a plain SET / RESET: let the server answer it
        self.reason = value
        entry = _Pending(F_QUERY, infos, started=now)
        self._pending.append(entry)
        noop = NOOP_RESET if infos[0].kind == "reset" else NOOP_SET
        return Substitute(frontend.encode_query(noop))

    def _execute_held(self, name: str, portal: _Prepared, now: float) -> ClientVerdict | None:
        """Execute of a portal that needs approval: hold it, or apply the decision that came."""
        if self._resolution is None:
            assert isinstance(portal.decision, RequireApproval)
            self.held = HeldStatement(
                portal.decision, portal.statements, portal.text, portal.params, "extended"
            )
            return HOLD
        decision = self._decide(portal.statements)
        approval_id, self._resolution_id = self._resolution_id, None
        if isinstance(decision, Deny):
            verdict = self._deny_extended(portal.statements, decision, now)
            self._pending[-1].approval_id = approval_id
            return verdict
        # Approved: further Executes of this portal (row limits) continue without asking.
        self._portals[name] = _Prepared(
            portal.statements, decision, portal.text, portal.params, approval_id=approval_id
        )
        return None

    def _deny_extended(
        self, infos: tuple[StatementInfo, ...], decision: Deny, now: float
    ) -> ClientVerdict:
        # The server gets a statement that fails at Execute; it then skips the client's
        # following messages up to Sync, as it would have after failing the real one.
        self._pending.append(_Pending(F_PARSE, injected=True))
        self._pending.append(_Pending(F_BIND, injected=True))
        self._pending.append(
            _Pending(
                F_EXECUTE,
                infos,
                started=now,
                decision=decision,
                injected=True,
                denial=denial_error(decision),
                protocol="extended",
            )
        )
        return Substitute(_INJECTED_EXTENDED)

    # Server -> client (every message but those of `server_skip_types`).

    def from_server(self, type_byte: int, body: memoryview) -> bytes | None:
        """Account for one server message; return replacement bytes for the client (b"" to
        drop the message) or None to relay it unchanged."""
        try:
            return self._from_server(type_byte, body)
        except WireFormatError as exc:
            raise RelayDesync(f"invalid {chr(type_byte)!r} message from the server: {exc}") from exc

    def _from_server(self, type_byte: int, body: memoryview) -> bytes | None:
        if type_byte == B_DATA_ROW:
            return self._data_row(body)
        if type_byte == B_COPY_DATA:
            return self._copy_data(body)
        if type_byte == B_COPY_DONE:
            self._copy_done()
            return None
        if type_byte == B_PARAMETER_STATUS:
            return None
        if type_byte == B_NOTICE_RESPONSE:
            return self._masking.scrub_fields(type_byte, body)[0] if self._masking else None
        if type_byte == B_NOTIFICATION_RESPONSE:
            return self._masking.scrub_notification(body) if self._masking else None
        if type_byte == B_READY_FOR_QUERY:
            self.transaction_status = backend.decode_ready_for_query(body)
            self._ready()
            return None
        if type_byte == B_ERROR_RESPONSE:
            replacement = self._error(body)
            if replacement is None and self._masking is not None:
                replacement = self._masking.scrub_fields(type_byte, body)[0]
            return replacement
        head = self._head(type_byte)
        op = head.op
        if head.denial is not None and head.op in (F_QUERY, F_FUNCTION_CALL):
            return b""  # whatever the injected failure says before its error is not shown
        result: bytes | None = b"" if head.injected else None
        if type_byte == B_ROW_DESCRIPTION:
            if op == F_DESCRIBE:
                self._described(head, body)
                self._pending.popleft()
            elif op in (F_QUERY, F_EXECUTE):
                if self._masking is not None:
                    info = (
                        head.statements[head.index] if head.index < len(head.statements) else None
                    )
                    head.mask_plan = self._masking.for_rows(
                        info, body, _unmask(head.decision), _mask_with(head.decision)
                    )
                    head.unmasked = bool(_unmask(head.decision))
            else:
                self._desync(type_byte, op)
        elif type_byte in (B_COMMAND_COMPLETE, B_EMPTY_QUERY_RESPONSE):
            tag = backend.decode_command_complete(body) if type_byte == B_COMMAND_COMPLETE else ""
            if op == F_EXECUTE:
                self._pending.popleft()
            elif op != F_QUERY:
                self._desync(type_byte, op)
            result = self._truncated_completion(head, tag)
            self._statement_done(head, "ok", tag=tag)
        elif type_byte in (B_COPY_IN_RESPONSE, B_COPY_OUT_RESPONSE, B_COPY_BOTH_RESPONSE):
            if op not in (F_QUERY, F_EXECUTE):
                self._desync(type_byte, op)
            if type_byte == B_COPY_IN_RESPONSE:
                self._copy_in = True
            elif type_byte == B_COPY_OUT_RESPONSE and self._masking is not None:
                self._copy_out(head, body)
        elif type_byte == B_PARSE_COMPLETE:
            self._expect_pop(op, F_PARSE, type_byte)
        elif type_byte == B_BIND_COMPLETE:
            self._expect_pop(op, F_BIND, type_byte)
        elif type_byte == B_CLOSE_COMPLETE:
            self._expect_pop(op, F_CLOSE, type_byte)
        elif type_byte == B_NO_DATA:
            if op == F_DESCRIBE:
                self._described(head, None)
            self._expect_pop(op, F_DESCRIBE, type_byte)
        elif type_byte == B_PARAMETER_DESCRIPTION:
            if op != F_DESCRIBE or not head.described_statement:
                self._desync(type_byte, op)
            # Masking names every Describe; the types matter only to approvers and recorded
            # parameters.
            if head.statement_name is not None and self._needs_types(head.statement_name):
                self._learn_types(head.statement_name, body)
        elif type_byte == B_PORTAL_SUSPENDED:
            self._expect_pop(op, F_EXECUTE, type_byte)
            if self._masking is not None and head.portal is not None:
                self._masking.suspended(head.portal, head.mask_plan)
            self._statement_done(head, "suspended")
        elif type_byte == B_FUNCTION_CALL_RESPONSE:
            if op != F_FUNCTION_CALL:
                self._desync(type_byte, op)
        else:
            self._desync(type_byte, op)
        return result

    def _copy_out(self, head: _Pending, body: memoryview) -> None:
        """A COPY ... TO STDOUT starts: its rows are masked like a result's."""
        assert self._masking is not None
        info = _copy_out_statement(head)
        if info is None:
            # COPY TO STDOUT is the only statement that answers with CopyOutResponse; one
            # Bastion cannot attribute (a function running COPY?) has rows it cannot mask.
            raise RelayDesync("the server sent COPY data for a statement that is not a COPY")
        decision = head.decision
        rewriter = self._masking.for_copy(info, body, _unmask(decision), _mask_with(decision))
        head.unmasked = bool(_unmask(decision))
        if rewriter is not None:
            head.copy_out = rewriter
            head.mask_plan = rewriter.plan

    def _copy_data(self, body: memoryview) -> bytes | None:
        head = self._head(B_COPY_DATA)
        rewriter = head.copy_out
        if rewriter is None:
            return None
        return frame(B_COPY_DATA, rewriter.rewrite(body))

    def _copy_done(self) -> None:
        if self._pending:
            head = self._pending[0]
            rewriter, head.copy_out = head.copy_out, None
            if rewriter is not None:
                rewriter.finish()

    def data_rows(self, run: memoryview) -> bytes | None:
        """Several consecutive DataRows of the current result (whole messages), answered
        together: masked in one pass (one content scan for all), or None when they pass
        unchanged."""
        if not self._pending:
            raise RelayDesync("server sent a row with no request outstanding")
        head = self._pending[0]
        plan = head.mask_plan
        if plan is None or head.max_rows is not None:
            bodies = message_bodies(run)
            replies = [self._data_row(body) for body in bodies]
            if all(reply is None for reply in replies):
                return None
            return b"".join(
                frame(B_DATA_ROW, bytes(body)) if reply is None else reply
                for body, reply in zip(bodies, replies, strict=True)
            )
        return plan.apply_run(run)  # rows are counted only for max_rows, handled above

    def _data_row(self, body: memoryview) -> bytes | None:
        if not self._pending:
            raise RelayDesync("server sent a row with no request outstanding")
        head = self._pending[0]
        head.rows += 1
        if head.max_rows is not None and head.rows > head.max_rows:
            return b""
        plan = head.mask_plan
        if plan is not None:
            return frame(B_DATA_ROW, plan.apply(body))
        return None

    def _truncated_completion(self, entry: _Pending, tag: str) -> bytes | None:
        limit = entry.max_rows
        rows, entry.rows = entry.rows, 0
        if limit is None or rows <= limit:
            return None
        word = tag.partition(" ")[0]
        decision = entry.decision
        rule = decision.rule if isinstance(decision, Allow) else "policy"
        notice = backend.encode_notice(
            f"bastion: {rule}: result truncated to {limit} of {rows} rows",
            hint="ask for fewer rows (LIMIT) or for a rule without max_rows",
        )
        return notice + frame(B_COMMAND_COMPLETE, cstr(f"{word} {limit}"))

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

    def _error(self, body: memoryview) -> bytes | None:
        fields = backend.decode_fields(body)
        sqlstate = fields.get("C", "")
        if not self._pending:
            return None  # an asynchronous error, e.g. FATAL on administrator shutdown
        head = self._pending[0]
        head.rows = 0
        if head.op in (F_QUERY, F_FUNCTION_CALL):
            if head.denial is not None:
                for _ in range(max(1, len(head.statements))):
                    self._statement_done(head, "denied", sqlstate=_denial_state(head))
                return head.denial
            if head.op == F_QUERY:
                self._statement_done(head, "error", sqlstate=sqlstate)
                # The rest of the Query's statements will not run.
                while head.index < len(head.statements):
                    self._statement_done(head, "skipped")
            return None
        if head.op == F_SYNC:
            return None  # e.g. a COMMIT failing at Sync; ReadyForQuery follows
        # Extended protocol: the server now skips everything up to the next Sync. When the
        # error comes from a failure Bastion injected for a denial (at its Bind or Execute),
        # the client gets the denial instead.
        replacement: bytes | None = None
        caused_by_denial = head.injected
        first = True
        while self._pending and self._pending[0].op not in _ENDS_AT_READY:
            entry = self._pending.popleft()
            if entry.denial is not None and caused_by_denial and replacement is None:
                replacement = entry.denial
                self._statement_done(entry, "denied", sqlstate=_denial_state(entry))
            elif entry.op == F_EXECUTE:
                self._statement_done(entry, "error" if first else "skipped", sqlstate=sqlstate)
            first = False
        self._copy_in = False
        return replacement

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
        plan, entry.mask_plan = entry.mask_plan, None
        if (
            self._masking is not None
            and outcome == "ok"
            and info is not None
            and info.kind.startswith(_SCHEMA_CHANGES)
        ):
            self._masking.schema_changed()
        if not self._record_statements:
            entry.started = now
            return
        decision = entry.decision
        ctx = self.context
        statement = info.normalized if info else ""
        params: tuple[str | None, ...] = ()
        recording = self._recording
        if recording is not None:
            if recording.full_text and info is not None:
                statement = recording.scrub(info.text)
            if recording.parameters:
                params = tuple(p if p is None else recording.scrub(p) for p in entry.params)
        names = _names(info)
        event = StatementEvent(
            session_id=ctx.session_id,
            user=ctx.identity.name,
            target=ctx.target,
            protocol=entry.protocol,
            kind=info.kind if info else "unknown",
            statement=statement,
            fingerprint=info.fingerprint if info else "",
            decision=_decision_name(decision),
            rule=decision.rule,
            outcome=outcome,
            sqlstate=sqlstate,
            command_tag=tag,
            rows=_row_count(tag),
            duration_ms=round((now - entry.started) * 1000.0, 3),
            decide_ms=round(entry.decide_seconds * 1000.0, 3),
            tables=names.tables,
            tables_written=names.written,
            columns=names.columns,
            masked_cells=masked_counts(plan),
            unmasked=tuple(sorted(_unmask(decision))) if entry.unmasked else (),
            parameters=params,
            approval_id=entry.approval_id,
        )
        if self._durable_sink is not None and self.on_durable is not None:
            if outcome in _RAN:
                self.undurable += 1
                self.hold_output = True
                self._durable_sink.statement_durable(event, self.on_durable)
            else:
                # It did not run: its refusal is shown whether or not the record is stored.
                self._durable_sink.statement_durable(event, _not_waited_for)
        else:
            self._audit.statement(event)
        entry.started = now


class _RecordedNames(NamedTuple):
    """What a statement record names, worked out once per analysis."""

    tables: tuple[str, ...]
    written: tuple[str, ...]
    columns: tuple[str, ...]  # `table.column` when the table is certain


_NO_NAMES = _RecordedNames((), (), ())
# Keyed by the analysis's id(), with the analysis kept alive next to its names so the id is
# not reused meanwhile: hashing a StatementInfo costs more than working the names out.
_recorded_names: dict[int, tuple[StatementInfo, _RecordedNames]] = {}
_RECORDED_NAMES_LIMIT = 4096


def _names(info: StatementInfo | None) -> _RecordedNames:
    if info is None:
        return _NO_NAMES
    known = _recorded_names.get(id(info))
    if known is not None and known[0] is info:
        return known[1]
    names = _RecordedNames(
        tuple(dict.fromkeys(t.qualified for t in (*info.tables_read, *info.tables_written))),
        tuple(dict.fromkeys(t.qualified for t in info.tables_written)),
        tuple(
            dict.fromkeys(
                f"{c.table.qualified}.{c.name}" if c.table is not None else c.name
                for c in info.columns
            )
        ),
    )
    if len(_recorded_names) >= _RECORDED_NAMES_LIMIT:
        _recorded_names.clear()
    _recorded_names[id(info)] = (info, names)
    return names


def _copies_out(infos: tuple[StatementInfo, ...]) -> list[StatementInfo]:
    """The statements among `infos` (and those they hold) that are COPY ... TO STDOUT."""
    found: list[StatementInfo] = []
    for info in infos:
        if _is_copy_out(info):
            found.append(info)
        found.extend(_copies_out(info.inner))
    return found


def _is_copy_out(info: StatementInfo) -> bool:
    copy = info.copy
    return copy is not None and copy.direction == "to" and copy.target == "stdout"


def _copy_out_statement(entry: _Pending) -> StatementInfo | None:
    """The COPY ... TO STDOUT a CopyOutResponse answers, or None for any other statement."""
    statements = entry.statements
    index = entry.index if entry.op == F_QUERY else 0
    info = statements[index] if index < len(statements) else None
    return info if info is not None and _is_copy_out(info) else None


def _mask_with(decision: Decision) -> str | None:
    return decision.obligations.mask_with if isinstance(decision, Allow) else None


def _unmask(decision: Decision) -> frozenset[str]:
    return decision.obligations.unmask if isinstance(decision, Allow) else frozenset()


def _not_waited_for(durable: bool) -> None:
    """Durability callback for records of statements that did not run."""


def _denial_state(entry: _Pending) -> str:
    decision = entry.decision
    return decision.sqlstate if isinstance(decision, Deny) else DENIAL_SQLSTATE


def _decision_name(decision: Decision) -> str:
    if isinstance(decision, Allow):
        return "allow"
    if isinstance(decision, Deny):
        return "deny"
    return "require_approval"


def _row_count(tag: str) -> int | None:
    word, _, rest = tag.partition(" ")
    if word not in _COUNTED_TAGS or not rest:
        return None
    last = rest.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else None

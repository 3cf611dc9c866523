"""RelayMachine enforcement (sans-IO): denied statements never reach the server, the server's
transaction fails with the client's, and max_rows truncates results."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from bastion.identity.directory import Identity
from bastion.identity.records import IdentityKind
from bastion.pipeline.context import ConnectionContext
from bastion.pipeline.decision import (
    SESSION_DEFAULT,
    Allow,
    Decision,
    Deny,
    Obligations,
    RequireApproval,
    SessionDecision,
)
from bastion.pipeline.stages import PglastAnalyzer
from bastion.session.pg_relay import (
    FORWARD,
    HOLD,
    INJECTED_FAILURE,
    RelayMachine,
    Substitute,
)
from bastion.sql.statement import StatementInfo
from bastion.wire.postgres import backend, frontend
from session.test_pg_relay import BIND_OK, PARSE_OK, ROWDESC, Sink, _messages, complete


class KindDecider:
    """Denies `drop_*`, holds `do` for approval, limits selects to 3 rows."""

    def connect(self, context: ConnectionContext) -> SessionDecision:
        return SESSION_DEFAULT

    def decide(self, context: ConnectionContext, statements: Sequence[StatementInfo]) -> Decision:
        kinds = {s.kind for s in statements}
        if any(k.startswith("drop_") for k in kinds):
            return Deny("no-drops", "dropping is not allowed", hint="ask a DBA")
        if "do" in kinds:
            return RequireApproval("do-needs-approval", "DO blocks need approval", ("dba",))
        return Allow("limited", Obligations(max_rows=3))


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
def machine(sink: Sink) -> RelayMachine:
    identity = Identity("alice", ("analysts",), IdentityKind.HUMAN, "scram-sha-256")
    context = ConnectionContext("s1", identity, "127.0.0.1", 1, None, "shop")
    return RelayMachine(context, PglastAnalyzer(), KindDecider(), sink)


def feed_client(machine: RelayMachine, data: bytes) -> list[object]:
    return [machine.from_client(t, memoryview(b)) for t, b in _messages(data)]


def feed_server(machine: RelayMachine, data: bytes) -> bytes:
    """What the client receives for this server output."""
    out = bytearray()
    for type_byte, body in _messages(data):
        replacement = machine.from_server(type_byte, memoryview(body))
        out += _frame(type_byte, body) if replacement is None else replacement
    return bytes(out)


def _frame(type_byte: int, body: bytes) -> bytes:
    return bytes([type_byte]) + (len(body) + 4).to_bytes(4, "big") + body


def _errors(data: bytes) -> list[dict[str, str]]:
    return [backend.decode_fields(b) for t, b in _messages(data) if t == ord("E")]


SERVER_FAILURE = backend.encode_error("22012", "division by zero")


def test_denied_query_is_replaced_by_a_certain_failure(machine: RelayMachine, sink: Sink) -> None:
    verdicts = feed_client(machine, frontend.encode_query("SELECT 1; DROP TABLE customers"))
    assert verdicts == [Substitute(frontend.encode_query(INJECTED_FAILURE))]
    seen = feed_server(machine, SERVER_FAILURE + backend.encode_ready_for_query(ord("E")))
    (error,) = _errors(seen)
    assert error["C"] == "42501"
    assert error["M"] == "bastion: no-drops: dropping is not allowed"
    assert error["H"] == "ask a DBA"
    assert seen.endswith(backend.encode_ready_for_query(ord("E")))
    # The whole message is refused: both statements are recorded as denied, none ran.
    assert [(e.kind, e.outcome, e.decision) for e in sink.statements] == [
        ("select", "denied", "deny"),
        ("drop_table", "denied", "deny"),
    ]


def test_denied_parse_whose_failure_surfaces_at_bind(machine: RelayMachine) -> None:
    # An unnamed statement is planned at Bind, so the injected failure may fail there.
    feed_client(machine, frontend.encode_parse("", "DROP TABLE t") + frontend.encode_sync())
    seen = feed_server(
        machine, PARSE_OK + SERVER_FAILURE + backend.encode_ready_for_query(ord("I"))
    )
    assert [chr(t) for t, _ in _messages(seen)] == ["E", "Z"]
    assert _errors(seen)[0]["M"].startswith("bastion: no-drops:")


def test_a_statement_needing_approval_is_held_then_runs_once_approved(
    machine: RelayMachine, sink: Sink
) -> None:
    query = frontend.encode_query("DO $$ BEGIN NULL; END $$")
    assert feed_client(machine, query) == [HOLD]
    assert machine.held is not None and machine.held.text == "DO $$ BEGIN NULL; END $$"
    assert machine.held.decision.approver_groups == ("dba",)
    machine.resolve(Allow("do-needs-approval"), approval_id=7)
    assert machine.held is None
    assert feed_client(machine, query) == [FORWARD]
    feed_server(machine, _frame(ord("C"), b"DO\x00") + backend.encode_ready_for_query(ord("I")))
    (event,) = sink.statements
    assert (event.outcome, event.approval_id, event.rule) == ("ok", 7, "do-needs-approval")


def test_a_held_statement_that_is_denied_fails_with_the_approvers_reason(
    machine: RelayMachine, sink: Sink
) -> None:
    query = frontend.encode_query("DO $$ BEGIN NULL; END $$")
    feed_client(machine, query)
    machine.resolve(Deny("approval", "request 7 denied by omar: not today"), approval_id=7)
    (verdict,) = feed_client(machine, query)
    assert isinstance(verdict, Substitute)
    seen = feed_server(machine, SERVER_FAILURE + backend.encode_ready_for_query(ord("E")))
    (error,) = _errors(seen)
    assert error["C"] == "42501" and "denied by omar: not today" in error["M"]
    assert sink.statements[0].approval_id == 7


def test_extended_protocol_holds_at_execute_with_the_parameters(machine: RelayMachine) -> None:
    batch = (
        frontend.encode_parse("", "DO $$ BEGIN NULL; END $$")
        + frontend.encode_bind("", "", (b"42", None, b"\x01"), (0, 0, 1))
        + frontend.encode_execute("", 0)
    )
    verdicts = feed_client(machine, batch)
    assert verdicts == [FORWARD, FORWARD, HOLD]
    assert machine.held is not None
    assert machine.held.params == ("42", None, "\\x01 (binary, type 0)")
    assert machine.held.protocol == "extended"


def test_setting_the_reason_is_answered_by_bastion(machine: RelayMachine) -> None:
    (verdict,) = feed_client(
        machine, frontend.encode_query("SET bastion.reason = 'TICKET-123: cleanup'")
    )
    assert isinstance(verdict, Substitute) and b"TICKET" not in verdict.data
    assert machine.reason == "TICKET-123: cleanup"
    feed_client(machine, frontend.encode_query("RESET bastion.reason"))
    assert machine.reason == ""


def test_denied_parse_in_a_pipeline(machine: RelayMachine, sink: Sink) -> None:
    batch = (
        frontend.encode_parse("", "SELECT 1")
        + frontend.encode_bind("", "")
        + frontend.encode_execute("", 0)
        + frontend.encode_parse("s2", "DROP TABLE orders")
        + frontend.encode_bind("", "s2")
        + frontend.encode_execute("", 0)
        + frontend.encode_sync()
    )
    verdicts = feed_client(machine, batch)
    assert verdicts[:3] == [FORWARD] * 3
    substitute = verdicts[3]
    assert isinstance(substitute, Substitute)
    assert [t for t, _ in _messages(substitute.data)] == [ord(c) for c in "PBEH"]
    assert INJECTED_FAILURE.encode() in substitute.data
    assert b"orders" not in substitute.data
    # The server answers the first statement, then the injected Parse and Bind, then fails
    # the injected Execute and skips the client's Bind/Execute up to Sync.
    server = (
        PARSE_OK
        + BIND_OK
        + ROWDESC
        + complete("SELECT 1")
        + PARSE_OK
        + BIND_OK
        + SERVER_FAILURE
        + backend.encode_ready_for_query(ord("I"))
    )
    seen = feed_server(machine, server)
    types = [chr(t) for t, _ in _messages(seen)]
    assert types == ["1", "2", "T", "C", "E", "Z"]
    assert _errors(seen)[0]["M"].startswith("bastion: no-drops:")
    assert [(e.kind, e.outcome) for e in sink.statements] == [
        ("select", "ok"),
        ("drop_table", "denied"),
        ("unknown", "skipped"),
    ]


def test_max_rows_truncates_and_says_so(machine: RelayMachine) -> None:
    feed_client(machine, frontend.encode_query("SELECT g FROM generate_series(1, 5) g"))
    rows = b"".join(
        _frame(ord("D"), b"\x00\x01\x00\x00\x00\x01" + bytes([48 + i])) for i in range(5)
    )
    seen = feed_server(machine, ROWDESC)
    assert machine.inspect_rows  # rows of a limited result are counted
    seen += feed_server(machine, rows + complete("SELECT 5") + backend.encode_ready_for_query(73))
    messages = _messages(seen)
    assert [chr(t) for t, _ in messages] == ["T", "D", "D", "D", "N", "C", "Z"]
    notice = backend.decode_fields(messages[4][1])
    assert notice["M"] == "bastion: limited: result truncated to 3 of 5 rows"
    assert backend.decode_command_complete(messages[5][1]) == "SELECT 3"
    assert not machine.inspect_rows


def test_max_rows_holds_for_rows_answered_together(machine: RelayMachine) -> None:
    feed_client(machine, frontend.encode_query("SELECT g FROM generate_series(1, 5) g"))
    feed_server(machine, ROWDESC)
    run = b"".join(
        _frame(ord("D"), b"\x00\x01\x00\x00\x00\x01" + bytes([48 + i])) for i in range(5)
    )
    kept = machine.data_rows(memoryview(run))
    assert kept is not None and [chr(t) for t, _ in _messages(kept)] == ["D", "D", "D"]
    end = feed_server(machine, complete("SELECT 5") + backend.encode_ready_for_query(73))
    assert backend.decode_command_complete(_messages(end)[1][1]) == "SELECT 3"


def test_copy_out_cannot_escape_max_rows(machine: RelayMachine, sink: Sink) -> None:
    verdicts = feed_client(machine, frontend.encode_query("COPY t TO STDOUT"))
    assert isinstance(verdicts[0], Substitute)  # the server runs the injected failure instead
    seen = feed_server(machine, backend.encode_error("22012", "division by zero"))
    error = backend.decode_fields(_messages(seen)[0][1])
    assert error["M"] == "bastion: limited: COPY ... TO STDOUT cannot be limited to 3 rows"
    assert "LIMIT" in error["H"]


def test_results_within_the_limit_are_untouched(machine: RelayMachine) -> None:
    feed_client(machine, frontend.encode_query("SELECT 1"))
    server = ROWDESC + _frame(ord("D"), b"\x00\x01\x00\x00\x00\x011") + complete("SELECT 1")
    assert feed_server(machine, server) == server


@pytest.mark.parametrize(
    ("sql", "writes"),
    [
        ("SELECT * FROM customers", False),
        ("FETCH 1 FROM c", False),
        ("BEGIN", False),
        ("INSERT INTO t VALUES (1)", True),
        ("CREATE TABLE x (a int)", True),
        ("TRUNCATE t", True),
        ("VACUUM", True),
    ],
)
def test_read_only_sessions_refuse_writes(sink: Sink, sql: str, writes: bool) -> None:
    identity = Identity("agent", (), IdentityKind.AGENT, "scram-sha-256")
    context = ConnectionContext("s2", identity, "127.0.0.1", 1, None, "shop")
    machine = RelayMachine(context, PglastAnalyzer(), KindDecider(), sink, read_only=True)
    verdict = machine.from_client(ord("Q"), memoryview(frontend.encode_query(sql)[5:]))
    assert isinstance(verdict, Substitute) == writes
    if writes:
        seen = feed_server(machine, SERVER_FAILURE + backend.encode_ready_for_query(ord("I")))
        assert _errors(seen)[0]["M"].startswith("bastion: session.read_only:")


@pytest.mark.parametrize(
    "sql",
    [
        "SET default_transaction_read_only = off",
        "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
        "BEGIN READ WRITE",
        "SELECT set_config('default_transaction_read_only', 'off', false)",
        "SELECT set_config($1, 'off', false)",
    ],
)
def test_read_only_sessions_cannot_switch_to_read_write(sink: Sink, sql: str) -> None:
    identity = Identity("agent", (), IdentityKind.AGENT, "scram-sha-256")
    context = ConnectionContext("s3", identity, "127.0.0.1", 1, None, "shop")
    machine = RelayMachine(context, PglastAnalyzer(), KindDecider(), sink, read_only=True)
    verdict = machine.from_client(ord("Q"), memoryview(frontend.encode_query(sql)[5:]))
    assert isinstance(verdict, Substitute)

"""RelayMachine: client and server messages in, statement events and desyncs out (sans-IO)."""

from __future__ import annotations

import pytest

from bastion.errors import ProtocolViolation
from bastion.identity.directory import Identity
from bastion.identity.records import IdentityKind
from bastion.pipeline.context import ConnectionContext
from bastion.pipeline.events import ConnectionEvent, StatementEvent
from bastion.pipeline.stages import AllowAllDecider, PglastAnalyzer
from bastion.session.pg_relay import FORWARD, TERMINATE, RelayDesync, RelayMachine
from bastion.wire.postgres import backend, frontend
from bastion.wire.postgres.framing import MessageReader


class Sink:
    def __init__(self) -> None:
        self.statements: list[StatementEvent] = []

    def connection(self, event: ConnectionEvent) -> None:
        pass

    def statement(self, event: StatementEvent) -> None:
        self.statements.append(event)


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
def machine(sink: Sink) -> RelayMachine:
    identity = Identity(
        name="alice", groups=("analysts",), kind=IdentityKind.HUMAN, auth_method="scram-sha-256"
    )
    context = ConnectionContext(
        session_id="s1",
        identity=identity,
        source_ip="127.0.0.1",
        source_port=1,
        tls_version=None,
        target="shop",
    )
    return RelayMachine(context, PglastAnalyzer(), AllowAllDecider(), sink)


def _messages(data: bytes) -> list[tuple[int, bytes]]:
    reader = MessageReader(1 << 20)
    reader.feed(data)
    out = []
    while (message := reader.next_message()) is not None:
        out.append(message)
    return out


def client(machine: RelayMachine, data: bytes) -> list[object]:
    return [machine.from_client(t, memoryview(b)) for t, b in _messages(data)]


def server(machine: RelayMachine, data: bytes) -> None:
    for t, b in _messages(data):
        machine.from_server(t, memoryview(b))


def complete(tag: str) -> bytes:
    return b"C" + (len(tag) + 5).to_bytes(4, "big") + tag.encode() + b"\x00"


ROWDESC = b"T\x00\x00\x00\x06\x00\x00"
PARSE_OK, BIND_OK, NO_DATA = b"1\x00\x00\x00\x04", b"2\x00\x00\x00\x04", b"n\x00\x00\x00\x04"


def test_simple_query_with_several_statements(machine: RelayMachine, sink: Sink) -> None:
    assert client(machine, frontend.encode_query("SELECT 1; UPDATE t SET a = 2; DROP TABLE x")) == [
        FORWARD
    ]
    server(machine, ROWDESC + complete("SELECT 1") + complete("UPDATE 7") + complete("DROP TABLE"))
    server(machine, backend.encode_ready_for_query(ord("I")))
    kinds = [(e.kind, e.outcome, e.rows) for e in sink.statements]
    assert kinds == [("select", "ok", 1), ("update", "ok", 7), ("drop_table", "ok", None)]
    assert sink.statements[1].statement == "UPDATE t SET a = $1"  # literals never logged


def test_error_mid_query_skips_the_rest(machine: RelayMachine, sink: Sink) -> None:
    client(machine, frontend.encode_query("SELECT 1; SELECT 1/0; SELECT 3"))
    server(machine, ROWDESC + complete("SELECT 1"))
    server(machine, backend.encode_error("22012", "division by zero"))
    server(machine, backend.encode_ready_for_query(ord("I")))
    assert [(e.outcome, e.sqlstate) for e in sink.statements] == [
        ("ok", ""),
        ("error", "22012"),
        ("skipped", ""),
    ]


def test_extended_protocol_pipeline_with_error_until_sync(
    machine: RelayMachine, sink: Sink
) -> None:
    batch = b"".join(
        [
            frontend.encode_parse("s1", "SELECT $1::int"),
            frontend.encode_bind("", "s1", (b"1",)),
            frontend.encode_describe("P", ""),
            frontend.encode_execute("", 0),
            frontend.encode_parse("", "SELECT 1/0"),
            frontend.encode_bind("", ""),
            frontend.encode_execute("", 0),
            frontend.encode_bind("", "s1", (b"2",)),
            frontend.encode_execute("", 0),
            frontend.encode_sync(),
            frontend.encode_bind("", "s1", (b"3",)),
            frontend.encode_execute("", 5),
            frontend.encode_sync(),
        ]
    )
    assert set(client(machine, batch)) == {FORWARD}
    server(machine, PARSE_OK + BIND_OK + ROWDESC + complete("SELECT 1"))
    server(machine, PARSE_OK + BIND_OK + backend.encode_error("22012", "division by zero"))
    server(machine, backend.encode_ready_for_query(ord("I")))
    server(machine, BIND_OK + b"s\x00\x00\x00\x04" + backend.encode_ready_for_query(ord("T")))
    outcomes = [(e.protocol, e.outcome, e.sqlstate) for e in sink.statements]
    assert outcomes == [
        ("extended", "ok", ""),
        ("extended", "error", "22012"),
        ("extended", "skipped", "22012"),
        ("extended", "suspended", ""),
    ]
    assert machine.transaction_status == ord("T")


def test_describe_statement_and_close(machine: RelayMachine) -> None:
    client(
        machine,
        frontend.encode_parse("q", "SELECT 1")
        + frontend.encode_describe("S", "q")
        + frontend.encode_close("S", "q")
        + frontend.encode_sync(),
    )
    server(machine, PARSE_OK + b"t\x00\x00\x00\x06\x00\x00" + ROWDESC)
    server(machine, b"3\x00\x00\x00\x04" + backend.encode_ready_for_query(ord("I")))


def test_copy_in_ignores_sync_and_flush(machine: RelayMachine, sink: Sink) -> None:
    client(machine, frontend.encode_query("COPY t FROM STDIN"))
    server(machine, b"G\x00\x00\x00\x07\x00\x00\x00")
    client(
        machine,
        frontend.encode_copy_data(b"1\n")
        + frontend.encode_flush()
        + frontend.encode_sync()
        + frontend.encode_copy_done(),
    )
    server(machine, complete("COPY 1") + backend.encode_ready_for_query(ord("I")))
    assert [(e.kind, e.rows) for e in sink.statements] == [("copy", 1)]


def test_unexpected_server_reply_is_a_desync(machine: RelayMachine) -> None:
    client(machine, frontend.encode_parse("", "SELECT 1") + frontend.encode_sync())
    with pytest.raises(RelayDesync):
        server(machine, BIND_OK)


def test_reply_with_nothing_outstanding_is_a_desync(machine: RelayMachine) -> None:
    with pytest.raises(RelayDesync):
        server(machine, ROWDESC)


def test_notices_and_asynchronous_messages_need_no_request(machine: RelayMachine) -> None:
    server(machine, backend.encode_notice("hello") + backend.encode_parameter_status("a", "b"))
    server(machine, backend.encode_error("57P01", "terminating", severity="FATAL"))


def test_terminate_and_garbage_from_client(machine: RelayMachine) -> None:
    assert client(machine, frontend.encode_terminate()) == [TERMINATE]
    with pytest.raises(ProtocolViolation):
        machine.from_client(ord("p"), memoryview(b"secret\x00"))
    with pytest.raises(ProtocolViolation):
        machine.from_client(ord("B"), memoryview(b"\x00"))


class _NoCatalog:
    """A target whose catalog is loaded and empty: computed text columns are scanned."""

    classifications: dict[tuple[int, int], object] = {}
    ready = True
    snapshot = None

    def invalidate(self) -> None:
        pass


def _text_column_description() -> bytes:
    field = b"note\x00" + (0).to_bytes(4, "big") + (0).to_bytes(2, "big") + (25).to_bytes(4, "big")
    field += (-1).to_bytes(2, "big", signed=True) + (-1).to_bytes(4, "big", signed=True)
    field += (0).to_bytes(2, "big")
    body = (1).to_bytes(2, "big") + field
    return b"T" + (len(body) + 4).to_bytes(4, "big") + body


def _data_row(value: bytes) -> bytes:
    body = (1).to_bytes(2, "big") + len(value).to_bytes(4, "big") + value
    return body


@pytest.mark.parametrize("client_describes", [True, False])
def test_a_portal_is_described_once_whoever_asks(
    machine: RelayMachine, client_describes: bool
) -> None:
    from bastion.masking.plan import MaskPlanBuilder
    from bastion.masking.result_planner import ResultMaskPlanner
    from bastion.session.pg_relay import Substitute

    masked = RelayMachine(
        machine.context,
        PglastAnalyzer(),
        AllowAllDecider(),
        Sink(),
        masker=ResultMaskPlanner(MaskPlanBuilder(), {"shop": _NoCatalog()}),
    )
    messages = frontend.encode_parse("", "SELECT $1::text AS note") + frontend.encode_bind("", "")
    if client_describes:
        messages += frontend.encode_describe("P", "")
    verdicts = client(masked, messages + frontend.encode_execute("", 0) + frontend.encode_sync())
    injected = [v for v in verdicts if isinstance(v, Substitute)]
    # libpq's order (Bind, Describe, Execute): the client's own Describe serves the Execute.
    assert len(injected) == (0 if client_describes else 1)
    server(masked, PARSE_OK + BIND_OK + _text_column_description())
    assert masked.inspect_rows
    row = masked.from_server(ord("D"), memoryview(_data_row(b"mail ava@example.com")))
    assert row is not None and b"ava@example.com" not in row and b"@example.com" in row

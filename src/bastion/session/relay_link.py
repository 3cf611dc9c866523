"""RelayLink: the relay phase of one session, from the end of authentication to the close.

It owns the two FramedRelays (client to server, server to client), the RelayMachine that
accounts for every message, and the waits a session can go through:

- a statement held for approval (ApprovalHold): the client's further input stays unread;
- a statement waiting for room in a full audit record (AuditRoom);
- in sync audit mode, a statement's completion or error held back from the client until its
  audit record is durable.

Flow control is symmetric: when one side's write buffer fills, the other side stops being
read; a side held back for one of the waits above is not resumed by flow control meanwhile.
The link reports protocol failures and the end of the session to its owner, the ClientSession.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from bastion.errors import ProtocolViolation
from bastion.pipeline.context import ConnectionContext
from bastion.pipeline.decision import Deny
from bastion.session.approval_hold import ApprovalHold
from bastion.session.gateway import Gateway
from bastion.session.peer import PeerProtocol
from bastion.session.pg_relay import (
    HOLD,
    SKIP_ROWS,
    TERMINATE,
    RelayDesync,
    RelayMachine,
    Substitute,
)
from bastion.session.relay import FramedRelay
from bastion.wire.postgres.codes import (
    B_DATA_ROW,
    F_COPY_DATA,
    MAX_PROTOCOL_MESSAGE,
    TX_FAILED,
    TX_IDLE,
    TX_IN_BLOCK,
)

log = logging.getLogger("bastion.session")

AUDIT_NOT_DURABLE = "58030"
_TRANSACTION_STATES = {
    TX_IDLE: "idle",
    TX_IN_BLOCK: "in transaction",
    TX_FAILED: "failed transaction",
}  # io_error: the record of a statement that ran could not be stored


class RelayLink:
    def __init__(
        self,
        gateway: Gateway,
        context: ConnectionContext,
        client: PeerProtocol,
        server: PeerProtocol,
        *,
        read_only: bool,
        fail: Callable[[str, str], None],
        close: Callable[[str], None],
    ) -> None:
        assert client.transport is not None and server.transport is not None
        self._gw = gateway
        self._context = context
        self._client = client
        self._server = server
        self._client_transport = client.transport
        self._server_transport = server.transport
        self._fail = fail
        self._close = close
        self._closed = False
        self._terminate_requested = False
        self._hold: ApprovalHold | None = None
        self._audit_wait: asyncio.Task[None] | None = None
        self.machine = RelayMachine(
            context,
            gateway.analyzer,
            gateway.decider,
            gateway.audit,
            read_only=read_only,
            masker=gateway.masking,
            recording=gateway.recording,
        )
        loop = asyncio.get_running_loop()

        def on_durable(ok: bool) -> None:  # the audit writer's thread, or this one
            loop.call_soon_threadsafe(self._durable, ok)

        self.machine.on_durable = on_durable
        self._c2s = FramedRelay(
            self._server_transport.write,
            self._inspect_client,
            frozenset({F_COPY_DATA}),
            gateway.limits.max_message,
            max_streamed_length=gateway.limits.max_message,
        )
        self._s2c = FramedRelay(
            self._client_transport.write,
            self._inspect_server,
            SKIP_ROWS,
            MAX_PROTOCOL_MESSAGE,
        )
        # Rows that must be seen (masked or counted) go to the machine a chunk's worth at a
        # time; a row changes nothing else, so the per-message bookkeeping is not needed.
        self._s2c.batch_type = B_DATA_ROW
        self._s2c.batch_inspect = self.machine.data_rows

    def start(self) -> None:
        high = self._gw.limits.write_buffer_high_water
        self._client_transport.set_write_buffer_limits(high=high)
        self._server_transport.set_write_buffer_limits(high=high)
        self._client.on_pause = self._server_transport.pause_reading
        self._client.on_resume = self._resume_server_reading
        self._server.on_pause = self._client_transport.pause_reading
        self._server.on_resume = self._resume_client_reading
        self._server.start_relay(self._server_data)
        self._client.start_relay(self._client_data)

    def stop(self, why: str) -> None:
        """The session is closing: stop every wait (a held request is withdrawn)."""
        self._closed = True
        if self._hold is not None:
            self._hold.abandon(why)
            self._hold = None
        if self._audit_wait is not None:
            self._audit_wait.cancel()
            self._audit_wait = None

    def intercept_cancel(self) -> bool:
        """A CancelRequest for this session: True when it withdrew a held statement."""
        hold = self._hold
        return hold is not None and hold.cancel()

    @property
    def statement_count(self) -> int:
        return self.machine.statement_count

    @property
    def transaction_state(self) -> str:
        return _TRANSACTION_STATES.get(self.machine.transaction_status, "idle")

    @property
    def waiting(self) -> str:
        """What the session waits for now, for operators; "" when nothing."""
        if self._hold is not None:
            request = self._hold.request_id
            return f"approval {request}" if request is not None else "approval"
        if self._audit_wait is not None:
            return "audit record"
        if self._s2c.holding:
            return "audit durability"
        return ""

    # Client to server.

    def _client_data(self, data: bytes) -> None:
        if self._closed:
            return
        if self._c2s.holding:
            self._client_transport.pause_reading()  # resumed by flow control meanwhile
        try:
            self._c2s.feed(data)
        except ProtocolViolation as exc:
            self._fail(exc.sqlstate, exc.message)
            return
        if self._terminate_requested:
            self._close("client terminated")

    def _inspect_client(self, type_byte: int, body: memoryview) -> bytes | None:
        machine = self.machine
        verdict = machine.from_client(type_byte, body)
        # The request just queued may be the next to answer (nothing else outstanding): its
        # rows must be seen from the first one on if they are to be masked or counted.
        self._s2c.skip_types = machine.server_skip_types
        if isinstance(verdict, Substitute):
            return verdict.data
        if verdict is TERMINATE:
            self._terminate_requested = True
        elif verdict is HOLD:
            self._hold_client()
        return None

    def _hold_client(self) -> None:
        """The statement just inspected waits; nothing more is read from the client."""
        machine = self.machine
        self._c2s.hold()
        self._client_transport.pause_reading()
        if machine.waiting_for_audit:
            self._audit_wait = asyncio.get_running_loop().create_task(self._wait_for_audit())
            return
        assert machine.held is not None
        self._hold = ApprovalHold(
            self._gw.approvals,
            self._context,
            machine.held,
            reason=machine.reason,
            notify_client=self._s2c.inject,
            on_decided=self._approval_decided,
        )
        self._hold.start()

    def _approval_decided(self, hold: ApprovalHold) -> None:
        if self._closed or hold is not self._hold:
            return
        self._hold = None
        assert hold.decision is not None
        self.machine.resolve(hold.decision, hold.request_id)
        self._release_client()

    async def _wait_for_audit(self) -> None:
        room = self._gw.audit_room
        has_room = room is not None and await room.wait()
        if self._closed:
            return
        self._audit_wait = None
        self.machine.waiting_for_audit = False
        if not has_room:
            waited = f" for {room.wait_seconds:g}s" if room is not None else ""
            self.machine.resolve(
                Deny(
                    "audit.unavailable",
                    f"the audit record has had no room{waited}, so the statement did not run",
                    hint="retry in a moment; an operator should check the audit store",
                )
            )
        self._release_client()

    def _release_client(self) -> None:
        try:
            self._c2s.release()  # the held message is inspected again, with its decision
        except ProtocolViolation as exc:
            self._fail(exc.sqlstate, exc.message)
            return
        if self._terminate_requested:
            self._close("client terminated")
            return
        self._resume_client_reading()

    def _resume_client_reading(self) -> None:
        if not self._c2s.holding and not self._closed:
            self._client_transport.resume_reading()

    # Server to client.

    def _server_data(self, data: bytes) -> None:
        if self._closed:
            return
        if self._s2c.holding:
            self._server_transport.pause_reading()
        try:
            self._s2c.feed(data)
        except RelayDesync as exc:
            log.error(
                "relay desynchronized",
                extra={"fields": {"session_id": self._context.session_id, "error": exc.message}},
            )
            self._fail(exc.sqlstate, "Bastion lost track of the server's replies; session closed")
        except ProtocolViolation as exc:
            self._fail(exc.sqlstate, exc.message)

    def _inspect_server(self, type_byte: int, body: memoryview) -> bytes | None:
        machine = self.machine
        replacement = machine.from_server(type_byte, body)
        self._s2c.skip_types = machine.server_skip_types
        if machine.hold_output:
            # Sync audit: this completion (or error) reaches the client once its record and
            # every earlier one are durable.
            machine.hold_output = False
            if machine.undurable:
                self._s2c.hold(reinspect=False)
                self._server_transport.pause_reading()
        return replacement

    def _durable(self, ok: bool) -> None:
        if self._closed:
            return
        machine = self.machine
        machine.undurable -= 1
        if not ok:
            self._fail(
                AUDIT_NOT_DURABLE,
                "the audit record could not store this statement's record, so its result is "
                "withheld and the session is closed; the statement may have run",
            )
            return
        if machine.undurable or not self._s2c.holding:
            return
        try:
            self._s2c.release()
        except RelayDesync as exc:
            self._fail(exc.sqlstate, "Bastion lost track of the server's replies; session closed")
            return
        except ProtocolViolation as exc:
            self._fail(exc.sqlstate, exc.message)
            return
        self._resume_server_reading()

    def _resume_server_reading(self) -> None:
        if not self._s2c.holding and not self._closed:
            self._server_transport.resume_reading()

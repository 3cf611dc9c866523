"""PeerProtocol: one socket of a proxied session, client side or upstream side.

During the handshake it buffers bytes and lets a coroutine await whole messages; once the
session is established it switches to relay mode and hands every chunk straight to a
FramedRelay callback, with no await per message. Flow control is symmetric: when this side's
write buffer fills, the other side stops reading until it drains.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import cast

from bastion.errors import ProtocolViolation

_LENGTH = struct.Struct(">I")
# Bytes a peer may send ahead of the handshake before Bastion stops reading from it.
HANDSHAKE_BUFFER_LIMIT = 64 << 10


class PeerClosed(ConnectionError):
    """The peer closed the connection (or it failed) while we waited for its bytes."""


class PeerProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._inbox = bytearray()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._on_data: Callable[[bytes], None] | None = None
        self.on_lost: Callable[[Exception | None], None] | None = None
        self.on_pause: Callable[[], None] | None = None
        self.on_resume: Callable[[], None] | None = None
        self.bytes_in = 0
        self._reading_paused = False

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the Transport interface without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        if self._on_data is not None:
            self._on_data(data)
            return
        self._inbox += data
        if len(self._inbox) > HANDSHAKE_BUFFER_LIMIT and not self._reading_paused:
            assert self.transport is not None
            self.transport.pause_reading()
            self._reading_paused = True
        self._wake()

    def eof_received(self) -> bool | None:
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._wake()
        if self.on_lost is not None:
            self.on_lost(exc)

    def pause_writing(self) -> None:
        if self.on_pause is not None:
            self.on_pause()

    def resume_writing(self) -> None:
        if self.on_resume is not None:
            self.on_resume()

    # handshake-phase reads

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def buffered(self) -> int:
        return len(self._inbox)

    async def read_exact(self, n: int) -> bytes:
        while len(self._inbox) < n:
            self._resume_reading()  # a message bigger than the limit still has to arrive
            await self._wait()
        data = bytes(self._inbox[:n])
        del self._inbox[:n]
        if len(self._inbox) <= HANDSHAKE_BUFFER_LIMIT:
            self._resume_reading()
        return data

    def _resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()

    async def read_message(self, max_length: int) -> tuple[int, bytes]:
        header = await self.read_exact(5)
        length = _LENGTH.unpack_from(header, 1)[0]
        if length < 4:
            raise ProtocolViolation(f"invalid message length {length}")
        if length > max_length:
            raise ProtocolViolation(
                f"message of {length} bytes exceeds the {max_length}-byte limit during startup"
            )
        return header[0], await self.read_exact(length - 4)

    async def _wait(self) -> None:
        if self._closed:
            raise PeerClosed("connection closed")
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # relay mode

    def start_relay(self, on_data: Callable[[bytes], None]) -> None:
        """Switch to relay mode; bytes buffered during the handshake are delivered first."""
        self._on_data = on_data
        self._resume_reading()
        if self._inbox:
            pending = bytes(self._inbox)
            self._inbox.clear()
            on_data(pending)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

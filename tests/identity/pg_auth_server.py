"""A tiny PostgreSQL front end that only authenticates, for testing ScramServer with real drivers.

It speaks just enough of protocol 3.0: refuses SSL/GSS encryption requests, reads the startup
packet, runs AuthenticationSASL / SASLContinue / SASLFinal through a `ScramServer`, then sends
AuthenticationOk, a few ParameterStatus messages, BackendKeyData and ReadyForQuery, and waits
for Terminate. A failed exchange gets a FATAL ErrorResponse with the error's SQLSTATE. Each
connection's outcome is recorded in `outcomes`. It runs its own event loop in a thread so that
blocking clients (psycopg) and asyncio clients (asyncpg) can both use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from bastion.errors import AuthenticationFailed
from bastion.identity.scram import ScramServer

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
PROTOCOL_3 = 196608


@dataclass(frozen=True)
class Outcome:
    user: str
    authenticated: bool
    reason: str | None = None


def _message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def _auth(code: int, data: bytes = b"") -> bytes:
    return _message(b"R", struct.pack("!i", code) + data)


def _error(sqlstate: str, message: str) -> bytes:
    fields = b"".join(
        code + value.encode() + b"\x00"
        for code, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", sqlstate), (b"M", message))
    )
    return _message(b"E", fields + b"\x00")


class TinyPgAuthServer:
    """Listens on 127.0.0.1 on a free port; `make_scram(user)` decides each exchange."""

    def __init__(self, make_scram: Callable[[str], ScramServer]) -> None:
        self._make_scram = make_scram
        self.outcomes: list[Outcome] = []
        self.client_first_messages: list[bytes] = []
        self.errors: list[BaseException] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def __enter__(self) -> TinyPgAuthServer:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        future.result(timeout=10)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._session(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception as exc:  # surfaced by the tests through `errors`
            self.errors.append(exc)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            (length,) = struct.unpack("!i", await reader.readexactly(4))
            payload = await reader.readexactly(length - 4)
            (code,) = struct.unpack("!i", payload[:4])
            if code in (SSL_REQUEST, GSSENC_REQUEST):
                writer.write(b"N")
                continue
            assert code == PROTOCOL_3, code
            break
        parts = payload[4:].split(b"\x00")
        params = dict(zip(parts[0::2], parts[1::2], strict=False))
        user = params[b"user"].decode()
        scram = self._make_scram(user)

        writer.write(_auth(10, b"".join(m.encode() + b"\x00" for m in scram.mechanisms) + b"\x00"))
        try:
            kind, body = await self._read(reader)
            assert kind == b"p", kind
            mechanism, _, rest = body.partition(b"\x00")
            (size,) = struct.unpack("!i", rest[:4])
            client_first = rest[4 : 4 + size]
            self.client_first_messages.append(client_first)
            writer.write(_auth(11, scram.handle_client_first(mechanism.decode(), client_first)))
            kind, client_final = await self._read(reader)
            assert kind == b"p", kind
            server_final = scram.handle_client_final(client_final)
        except AuthenticationFailed as exc:
            self.outcomes.append(Outcome(user, False, getattr(exc, "reason", None)))
            writer.write(_error(exc.sqlstate, exc.message))
            await writer.drain()
            return
        self.outcomes.append(Outcome(user, True))
        writer.write(_auth(12, server_final))
        writer.write(_auth(0))
        for name, value in (
            ("server_version", "16.0"),
            ("server_encoding", "UTF8"),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO, MDY"),
            ("integer_datetimes", "on"),
            ("standard_conforming_strings", "on"),
        ):
            writer.write(_message(b"S", name.encode() + b"\x00" + value.encode() + b"\x00"))
        writer.write(_message(b"K", struct.pack("!ii", 1234, 5678)))
        writer.write(_message(b"Z", b"I"))
        await writer.drain()
        while True:
            kind, _ = await self._read(reader)
            if kind == b"X":
                return

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
        header = await reader.readexactly(5)
        (length,) = struct.unpack("!i", header[1:])
        return header[:1], await reader.readexactly(length - 4)

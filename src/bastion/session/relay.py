"""FramedRelay: forwards one direction of a PostgreSQL stream, message by message, in place.

This is the hot path. It walks message boundaries over the received chunk and forwards whole
ranges of untouched bytes with one write; only messages whose type is not in `skip_types` are
shown to the inspector, which may return replacement bytes (or b"" to drop the message).
Messages of a skipped type that straddle chunk boundaries are streamed through as they arrive,
so a huge DataRow or CopyData never has to be held in memory whole.

Runs of one message type can be shown together: when `batch_inspect` is set, consecutive
complete messages of `batch_type` (DataRows) in a chunk go to it in one call, as one view of
the whole messages, type bytes and lengths included; it answers for the whole run. Masking
uses it to rewrite many rows in one pass.

Two extras serve messages that must wait (a statement waiting for approval or for room in the
audit record; a result waiting until its audit record is durable). The inspector may call
`hold()` while it looks at a message: that message and everything after it are kept,
unforwarded, until `release()` feeds them through again. With `reinspect=True` the inspector
sees the held message a second time; with False it was already accounted for, and is written
as the inspector answered it. And `inject()` writes a message of Bastion's own between two
relayed messages, never inside one that is being streamed or held back.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from functools import cache

from bastion.errors import ProtocolViolation
from bastion.wire.postgres.framing import skip_messages, type_table

Inspector = Callable[[int, memoryview], bytes | None]
BatchInspector = Callable[[memoryview], bytes | None]
Writer = Callable[[bytes], None]

_LENGTH = struct.Struct(">I")


class FramedRelay:
    __slots__ = (
        "_batch_table",
        "_batch_type",
        "_held",
        "_held_first",
        "_holding",
        "_inspect",
        "_max_length",
        "_max_streamed_length",
        "_need",
        "_partial",
        "_queued",
        "_skip_table",
        "_skip_types",
        "_stream_left",
        "_write",
        "batch_inspect",
    )

    def __init__(
        self,
        write: Writer,
        inspect: Inspector,
        skip_types: frozenset[int],
        max_length: int,
        max_streamed_length: int = 0x3FFFFFFF,
    ) -> None:
        self._write = write
        self._inspect = inspect
        self.skip_types = skip_types
        self._max_length = max_length
        self._max_streamed_length = max_streamed_length
        self._partial = bytearray()
        self._need = 0  # bytes _partial must reach before a message can be complete
        self._stream_left = 0
        self._holding = False
        self._held = bytearray()
        # When not None: the held message is not inspected again but written as this.
        self._held_first: bytes | None = None
        self._queued: list[bytes] = []
        self.batch_type = -1
        self.batch_inspect: BatchInspector | None = None

    @property
    def skip_types(self) -> frozenset[int]:
        """Types of the messages forwarded without being shown to the inspector."""
        return self._skip_types

    @skip_types.setter
    def skip_types(self, types: frozenset[int]) -> None:
        self._skip_types = types
        self._skip_table = _table(types)

    @property
    def batch_type(self) -> int:
        """The type whose runs go to `batch_inspect` together (-1: none)."""
        return self._batch_type

    @batch_type.setter
    def batch_type(self, type_byte: int) -> None:
        self._batch_type = type_byte
        self._batch_table = _table(frozenset({type_byte}) if 0 <= type_byte < 256 else frozenset())

    def hold(self, *, reinspect: bool = True) -> None:
        """Keep the message being inspected, and all that follows, until release()."""
        self._holding = True
        self._held_first = None if reinspect else b""

    def release(self) -> None:
        """Write or re-inspect the held message, then feed the rest through."""
        held = bytes(self._held)
        first = self._held_first
        self._held = bytearray()
        self._held_first = None
        self._holding = False
        if first:
            self._write(first)
        if held:
            self.feed(held)
        if self._queued and not (self._holding or self._stream_left):
            self._flush_queued()

    @property
    def holding(self) -> bool:
        return self._holding

    @property
    def held_bytes(self) -> int:
        return len(self._held)

    def inject(self, message: bytes) -> None:
        """Write a whole message of Bastion's own at the next message boundary."""
        if self._stream_left or self._holding:
            self._queued.append(message)
        else:
            self._write(message)

    def _flush_queued(self) -> None:
        for message in self._queued:
            self._write(message)
        self._queued.clear()

    def feed(self, data: bytes) -> None:
        if self._holding:
            self._held += data
            return
        if self._stream_left:
            if len(data) < self._stream_left:
                self._stream_left -= len(data)
                self._write(data)
                return
            self._write(data[: self._stream_left])
            data = data[self._stream_left :]
            self._stream_left = 0
            if self._queued:
                self._flush_queued()
            if not data:
                return
        if self._partial:
            self._partial += data  # amortized O(1); never re-copy what is already held
            if len(self._partial) < self._need:
                return
            data = bytes(self._partial)
            self._partial = bytearray()
        # What this call forwards is gathered and written once: a result whose rows are
        # rewritten one by one must not cost a socket write per row.
        out: list[bytes] = []
        emit = out.append
        skip = self.skip_types
        skip_table = self._skip_table
        unpack = _LENGTH.unpack_from
        size = len(data)
        pos = start = 0
        view: memoryview | None = None
        while size - pos >= 5:
            # Whole messages of skipped types are passed over in C; the one found after them
            # (of another type, cut by the chunk's end, or with a bad length) is handled here.
            pos = skip_messages(data, pos, skip_table, self._max_streamed_length)
            if size - pos < 5:
                break
            type_byte = data[pos]
            length = unpack(data, pos + 1)[0]
            if length < 4:
                raise ProtocolViolation(f"invalid message length {length}")
            end = pos + 1 + length
            if type_byte in skip:
                if length > self._max_streamed_length:
                    raise ProtocolViolation(
                        f"message of {length} bytes exceeds the "
                        f"{self._max_streamed_length}-byte limit"
                    )
                if end > size:
                    emit(data[start:] if start else data)
                    self._write_all(out)
                    self._stream_left = end - size
                    return
                pos = end
                continue
            if length > self._max_length:
                raise ProtocolViolation(
                    f"message of {length} bytes exceeds the {self._max_length}-byte limit"
                )
            if end > size:
                self._need = end - pos
                break
            if view is None:
                view = memoryview(data)
            if type_byte == self.batch_type and self.batch_inspect is not None:
                end = self._run_end(data, end)
                replacement = self.batch_inspect(view[pos:end])
            else:
                replacement = self._inspect(type_byte, view[pos + 5 : end])
            skip = self.skip_types  # the inspector may switch row inspection on or off
            skip_table = self._skip_table
            if self._holding:
                if pos > start:
                    emit(data[start:pos])
                self._write_all(out)
                if self._held_first is None:
                    self._held += data[pos:]
                else:
                    self._held_first = replacement if replacement is not None else data[pos:end]
                    self._held += data[end:]
                return
            if replacement is not None:
                if pos > start:
                    emit(data[start:pos])
                if replacement:
                    emit(replacement)
                start = end
            pos = end
        if pos > start:
            emit(data if start == 0 and pos == size else data[start:pos])
        self._write_all(out)
        if pos < size:
            self._partial = bytearray(data[pos:])
            if size - pos < 5:
                self._need = 5

    def _run_end(self, data: bytes, end: int) -> int:
        """Where the run of whole `batch_type` messages that starts before `end` ends. A
        message of the run with a bad length ends it; the next turn of `feed` refuses it."""
        return skip_messages(data, end, self._batch_table, self._max_length)

    def _write_all(self, pieces: list[bytes]) -> None:
        if len(pieces) == 1:
            self._write(pieces[0])
        elif pieces:
            self._write(b"".join(pieces))

    @property
    def buffered(self) -> int:
        return len(self._partial)


@cache
def _table(types: frozenset[int]) -> bytes:
    return type_table(types)

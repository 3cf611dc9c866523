"""Typed-message framing: a type byte, an int32 length that counts itself, then the body.

`MessageReader` reassembles whole messages from stream chunks for the low-volume phases
(startup, authentication, tests). The relay hot path does not use it: it walks message
boundaries in place and forwards byte ranges, see `bastion.session.relay`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable

from bastion.wire.postgres.errors import WireFormatError

HEADER = struct.Struct("!cI")
LENGTH = struct.Struct("!I")


def frame(type_byte: int, body: bytes = b"") -> bytes:
    """Encode one typed message."""
    return bytes((type_byte,)) + LENGTH.pack(len(body) + 4) + body


def type_table(types: Iterable[int]) -> bytes:
    """The 256-byte table `skip_messages` takes: 1 for each type byte in `types`."""
    table = bytearray(256)
    for type_byte in types:
        table[type_byte] = 1
    return bytes(table)


def skip_messages_in_python(
    data: bytes | memoryview, position: int, types: bytes, max_length: int
) -> int:
    """Where the first message at or after `position` starts that is not a whole message of
    one of `types` (a `type_table`) with a length word from 4 to `max_length`. The relay
    handles that message itself, errors included; this only moves past the ones it would
    forward untouched. `skip_messages` is this in C when the extension is built."""
    if not 0 <= position <= len(data):
        raise IndexError("position is outside the data")
    size = len(data)
    unpack = LENGTH.unpack_from
    while size - position >= 5 and types[data[position]]:
        length = unpack(data, position + 1)[0]
        if length < 4 or length > max_length or length > size - position - 1:
            break
        position += 1 + length
    return position


skip_messages: Callable[[bytes | memoryview, int, bytes, int], int]
try:
    from bastion.wire.postgres import _walk

    skip_messages = _walk.skip
except ImportError:  # built without its C extension
    skip_messages = skip_messages_in_python


def message_bodies(run: bytes | memoryview) -> list[memoryview]:
    """The bodies of the whole messages that make up `run`, as views into it."""
    view = memoryview(run)
    bodies: list[memoryview] = []
    unpack = LENGTH.unpack_from
    position, size = 0, len(view)
    while position < size:
        if size - position < 5:
            raise WireFormatError("a run of messages ends inside a message header")
        end = position + 1 + unpack(view, position + 1)[0]
        if end > size or end < position + 5:
            raise WireFormatError("a message's length runs past the end of its run")
        bodies.append(view[position + 5 : end])
        position = end
    return bodies


class MessageReader:
    """Collects stream bytes and hands out complete `(type, body)` messages in order."""

    __slots__ = ("_buffer", "_max_length")

    def __init__(self, max_length: int) -> None:
        self._buffer = bytearray()
        self._max_length = max_length

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def take_remaining(self) -> bytes:
        """Return (and forget) bytes received beyond the last message handed out."""
        data = bytes(self._buffer)
        self._buffer.clear()
        return data

    def __len__(self) -> int:
        return len(self._buffer)

    def next_message(self) -> tuple[int, bytes] | None:
        """The next complete message, or None when more bytes are needed."""
        buf = self._buffer
        if len(buf) < 5:
            return None
        (length,) = LENGTH.unpack_from(buf, 1)
        if length < 4:
            raise WireFormatError(f"invalid message length {length}")
        if length > self._max_length:
            raise WireFormatError(
                f"message of {length} bytes exceeds the {self._max_length}-byte limit"
            )
        end = 1 + length
        if len(buf) < end:
            return None
        type_byte = buf[0]
        body = bytes(buf[5:end])
        del buf[:end]
        return type_byte, body


class BodyReader:
    """Cursor over a message body with bounds-checked reads of protocol primitives."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes | memoryview) -> None:
        self._data = bytes(data)
        self._pos = 0

    def int16(self) -> int:
        return self._unpack(">h", 2)

    def uint16(self) -> int:
        return self._unpack(">H", 2)

    def int32(self) -> int:
        return self._unpack(">i", 4)

    def uint32(self) -> int:
        return self._unpack(">I", 4)

    def byte(self) -> int:
        self._need(1)
        value = self._data[self._pos]
        self._pos += 1
        return value

    def raw(self, n: int) -> bytes:
        if n < 0:
            raise WireFormatError("negative length in message")
        self._need(n)
        value = self._data[self._pos : self._pos + n]
        self._pos += n
        return value

    def cstring(self) -> str:
        end = self._data.find(b"\x00", self._pos)
        if end < 0:
            raise WireFormatError("string is not NUL-terminated")
        raw = self._data[self._pos : end]
        self._pos = end + 1
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise WireFormatError("string is not valid UTF-8") from None

    def rest(self) -> bytes:
        value = self._data[self._pos :]
        self._pos = len(self._data)
        return value

    def at_end(self) -> bool:
        return self._pos == len(self._data)

    def expect_end(self, what: str) -> None:
        if self._pos != len(self._data):
            raise WireFormatError(f"trailing bytes in {what}")

    def _need(self, n: int) -> None:
        if self._pos + n > len(self._data):
            raise WireFormatError("message body is truncated")

    def _unpack(self, fmt: str, size: int) -> int:
        self._need(size)
        (value,) = struct.unpack_from(fmt, self._data, self._pos)
        self._pos += size
        result: int = value
        return result


def cstr(value: str) -> bytes:
    """Encode a protocol string; refuses embedded NULs, which would shift every later field."""
    try:
        encoded = value.encode()
    except UnicodeEncodeError:
        raise WireFormatError("protocol strings must be valid Unicode text") from None
    if b"\x00" in encoded:
        raise WireFormatError("protocol strings cannot contain NUL bytes")
    return encoded + b"\x00"

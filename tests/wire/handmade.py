"""Protocol bytes assembled by hand with `struct`, never through the codec under test.

Decoder tests feed these to the codec so that a mistake shared by an encoder and its decoder
cannot hide; encoder tests compare their output with them byte for byte.
"""

from __future__ import annotations

import struct


def string(text: str | bytes) -> bytes:
    """A protocol String: the bytes followed by one NUL."""
    raw = text.encode() if isinstance(text, str) else text
    return raw + b"\x00"


def message(type_char: str, body: bytes) -> bytes:
    """A typed message: type byte, int32 length counting itself, body."""
    return type_char.encode("ascii") + struct.pack("!I", len(body) + 4) + body


def startup_packet(body: bytes) -> bytes:
    """An untyped startup packet: int32 length counting itself, body."""
    return struct.pack("!I", len(body) + 4) + body


def split_message(data: bytes) -> tuple[str, bytes]:
    """Check the framing of exactly one typed message and return its type and body."""
    assert len(data) >= 5, data
    (length,) = struct.unpack_from("!I", data, 1)
    assert length == len(data) - 1, f"length field {length} for {len(data) - 1} bytes"
    return chr(data[0]), data[5:]


def strictly_shorter(body: bytes) -> list[bytes]:
    """Every proper prefix of a body, from empty to one byte short."""
    return [body[:n] for n in range(len(body))]

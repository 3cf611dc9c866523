"""Untyped startup-phase packets: SSLRequest, GSSENCRequest, CancelRequest, StartupMessage.

These are the only messages without a type byte: an int32 length (including itself), then an
int32 request code or protocol version, then a body. Parsing validates everything a hostile
client could get wrong, since this runs before the client has proved who it is.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from bastion.wire.postgres.codes import (
    CANCEL_REQUEST_CODE,
    GSSENC_REQUEST_CODE,
    PROTOCOL_3_0,
    SSL_REQUEST_CODE,
)
from bastion.wire.postgres.errors import WireFormatError
from bastion.wire.postgres.framing import cstr

MIN_STARTUP_LENGTH = 8
MAX_STARTUP_PARAMETERS = 64
MAX_CANCEL_KEY_BYTES = 256


@dataclass(frozen=True, slots=True)
class SSLRequest:
    """The client asks to switch to TLS before the startup message."""


@dataclass(frozen=True, slots=True)
class GSSENCRequest:
    """The client asks for GSSAPI encryption, which Bastion refuses with 'N'."""


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """Sent on a fresh connection to cancel the query running in another session."""

    process_id: int
    secret_key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class StartupMessage:
    """Protocol version and the connection parameters (user, database, options...)."""

    major: int
    minor: int
    parameters: dict[str, str]


StartupPacket = SSLRequest | GSSENCRequest | CancelRequest | StartupMessage


def startup_length(header: bytes, max_length: int) -> int:
    """Validate the 4-byte length prefix of a startup packet and return the body length."""
    if len(header) != 4:
        raise WireFormatError("startup packet header must be 4 bytes")
    length: int = struct.unpack("!I", header)[0]
    if length < MIN_STARTUP_LENGTH:
        raise WireFormatError(f"invalid startup packet length {length}")
    if length > max_length:
        raise WireFormatError(f"startup packet of {length} bytes exceeds the {max_length} limit")
    return length - 4


def parse_startup_packet(body: bytes) -> StartupPacket:
    """Parse everything after the length prefix."""
    if len(body) < 4:
        raise WireFormatError("startup packet too short")
    (code,) = struct.unpack_from("!I", body, 0)
    if code == SSL_REQUEST_CODE:
        _expect_len(body, 4, "SSLRequest")
        return SSLRequest()
    if code == GSSENC_REQUEST_CODE:
        _expect_len(body, 4, "GSSENCRequest")
        return GSSENCRequest()
    if code == CANCEL_REQUEST_CODE:
        key = body[8:]
        if len(body) < 12 or len(key) > MAX_CANCEL_KEY_BYTES:
            raise WireFormatError("malformed CancelRequest")
        (pid,) = struct.unpack_from("!I", body, 4)
        return CancelRequest(process_id=pid, secret_key=bytes(key))
    major, minor = code >> 16, code & 0xFFFF
    if major != 3:
        raise WireFormatError(
            f"unsupported frontend protocol {major}.{minor}: Bastion speaks protocol 3"
        )
    return StartupMessage(major=major, minor=minor, parameters=_parse_parameters(body[4:]))


def _expect_len(body: bytes, expected: int, what: str) -> None:
    if len(body) != expected:
        raise WireFormatError(f"malformed {what}")


def _parse_parameters(data: bytes) -> dict[str, str]:
    # name\0value\0 pairs, then a lone \0 where the next name would start.
    params: dict[str, str] = {}
    pos = 0
    while True:
        name_end = data.find(b"\x00", pos)
        if name_end < 0:
            raise WireFormatError("startup parameters are not NUL-terminated")
        if name_end == pos:
            if name_end != len(data) - 1:
                raise WireFormatError("trailing bytes after startup parameters")
            return params
        value_end = data.find(b"\x00", name_end + 1)
        if value_end < 0:
            raise WireFormatError("startup parameter without a value")
        try:
            name = data[pos:name_end].decode()
            value = data[name_end + 1 : value_end].decode()
        except UnicodeDecodeError:
            raise WireFormatError("startup parameters must be UTF-8") from None
        if name in params:
            raise WireFormatError(f"duplicate startup parameter {name!r}")
        if len(params) == MAX_STARTUP_PARAMETERS:
            raise WireFormatError(f"more than {MAX_STARTUP_PARAMETERS} startup parameters")
        params[name] = value
        pos = value_end + 1


def encode_startup_message(parameters: dict[str, str], minor: int = 0) -> bytes:
    body = bytearray(struct.pack("!I", PROTOCOL_3_0 | minor))
    for name, value in parameters.items():
        body += cstr(name) + cstr(value)
    body += b"\x00"
    return struct.pack("!I", len(body) + 4) + bytes(body)


def encode_ssl_request() -> bytes:
    return struct.pack("!II", 8, SSL_REQUEST_CODE)


def encode_gssenc_request() -> bytes:
    return struct.pack("!II", 8, GSSENC_REQUEST_CODE)


def encode_cancel_request(process_id: int, secret_key: bytes) -> bytes:
    return struct.pack("!III", 12 + len(secret_key), CANCEL_REQUEST_CODE, process_id) + secret_key

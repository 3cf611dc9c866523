"""Backend (server -> client) messages: encoders for what Bastion says to clients itself, and
decoders for what it must understand from the upstream server.

Error and notice fields use the single-byte codes of the protocol ('S' severity, 'V'
non-localized severity, 'C' SQLSTATE, 'M' message, 'D' detail, 'H' hint, ...).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bastion.wire.postgres.codes import (
    AUTH_CLEARTEXT_PASSWORD,
    AUTH_OK,
    AUTH_SASL,
    AUTH_SASL_CONTINUE,
    AUTH_SASL_FINAL,
    B_AUTHENTICATION,
    B_BACKEND_KEY_DATA,
    B_ERROR_RESPONSE,
    B_NEGOTIATE_PROTOCOL_VERSION,
    B_NOTICE_RESPONSE,
    B_NOTIFICATION_RESPONSE,
    B_PARAMETER_STATUS,
    B_READY_FOR_QUERY,
    TX_FAILED,
    TX_IDLE,
    TX_IN_BLOCK,
)
from bastion.wire.postgres.errors import WireFormatError
from bastion.wire.postgres.framing import BodyReader, cstr, frame


@dataclass(frozen=True, slots=True)
class Authentication:
    """An 'R' message: the auth code and whatever follows it (salt, SASL data, mechanisms)."""

    code: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class BackendKeyData:
    process_id: int
    secret_key: bytes


@dataclass(frozen=True, slots=True)
class Column:
    """One field of a RowDescription, as the server describes it."""

    name: str
    table_oid: int
    attnum: int
    type_oid: int
    type_size: int
    type_modifier: int
    format: int


# Decoders.


def decode_authentication(body: bytes | memoryview) -> Authentication:
    reader = BodyReader(body)
    code = reader.int32()
    return Authentication(code=code, payload=reader.rest())


def decode_sasl_mechanisms(payload: bytes) -> tuple[str, ...]:
    reader = BodyReader(payload)
    names: list[str] = []
    while True:
        name = reader.cstring()
        if not name:
            break
        names.append(name)
    reader.expect_end("AuthenticationSASL")
    return tuple(names)


def decode_backend_key_data(body: bytes | memoryview) -> BackendKeyData:
    reader = BodyReader(body)
    pid = reader.uint32()
    key = reader.rest()
    if not 4 <= len(key) <= 256:
        raise WireFormatError("malformed BackendKeyData")
    return BackendKeyData(process_id=pid, secret_key=key)


def decode_parameter_status(body: bytes | memoryview) -> tuple[str, str]:
    reader = BodyReader(body)
    name, value = reader.cstring(), reader.cstring()
    reader.expect_end("ParameterStatus")
    return name, value


def decode_ready_for_query(body: bytes | memoryview) -> int:
    if len(body) != 1 or body[0] not in (TX_IDLE, TX_IN_BLOCK, TX_FAILED):
        raise WireFormatError("malformed ReadyForQuery")
    return body[0]


def decode_fields(body: bytes | memoryview) -> dict[str, str]:
    """Fields of an ErrorResponse or NoticeResponse, keyed by their one-letter code."""
    reader = BodyReader(body)
    fields: dict[str, str] = {}
    while True:
        code = reader.byte()
        if code == 0:
            break
        fields[chr(code)] = reader.cstring()
    reader.expect_end("ErrorResponse")
    return fields


def decode_command_complete(body: bytes | memoryview) -> str:
    reader = BodyReader(body)
    tag = reader.cstring()
    reader.expect_end("CommandComplete")
    return tag


def decode_parameter_description(body: bytes | memoryview) -> tuple[int, ...]:
    """The parameter type OIDs of a described statement."""
    reader = BodyReader(body)
    count = reader.int16()
    if count < 0:
        raise WireFormatError("negative parameter count in ParameterDescription")
    types = tuple(reader.uint32() for _ in range(count))
    reader.expect_end("ParameterDescription")
    return types


def decode_row_description(body: bytes | memoryview) -> tuple[Column, ...]:
    reader = BodyReader(body)
    count = reader.int16()
    if count < 0:
        raise WireFormatError("negative column count in RowDescription")
    columns = tuple(
        Column(
            name=reader.cstring(),
            table_oid=reader.uint32(),
            attnum=reader.int16(),
            type_oid=reader.uint32(),
            type_size=reader.int16(),
            type_modifier=reader.int32(),
            format=reader.int16(),
        )
        for _ in range(count)
    )
    reader.expect_end("RowDescription")
    return columns


# Encoders.


def encode_authentication_ok() -> bytes:
    return frame(B_AUTHENTICATION, struct.pack("!i", AUTH_OK))


def encode_authentication_cleartext() -> bytes:
    return frame(B_AUTHENTICATION, struct.pack("!i", AUTH_CLEARTEXT_PASSWORD))


def encode_authentication_sasl(mechanisms: Iterable[str]) -> bytes:
    body = struct.pack("!i", AUTH_SASL) + b"".join(cstr(m) for m in mechanisms) + b"\x00"
    return frame(B_AUTHENTICATION, body)


def encode_authentication_sasl_continue(data: bytes) -> bytes:
    return frame(B_AUTHENTICATION, struct.pack("!i", AUTH_SASL_CONTINUE) + data)


def encode_authentication_sasl_final(data: bytes) -> bytes:
    return frame(B_AUTHENTICATION, struct.pack("!i", AUTH_SASL_FINAL) + data)


def encode_parameter_status(name: str, value: str) -> bytes:
    return frame(B_PARAMETER_STATUS, cstr(name) + cstr(value))


def encode_backend_key_data(process_id: int, secret_key: bytes) -> bytes:
    return frame(B_BACKEND_KEY_DATA, struct.pack("!I", process_id) + secret_key)


def encode_ready_for_query(status: int) -> bytes:
    return frame(B_READY_FOR_QUERY, bytes((status,)))


def encode_negotiate_protocol_version(newest_minor: int, unrecognized: Iterable[str]) -> bytes:
    names = list(unrecognized)
    body = struct.pack("!ii", newest_minor, len(names)) + b"".join(cstr(n) for n in names)
    return frame(B_NEGOTIATE_PROTOCOL_VERSION, body)


def encode_fields(fields: Mapping[str, str]) -> bytes:
    body = bytearray()
    for code, value in fields.items():
        if len(code) != 1 or not "\x01" <= code <= "\x7f":
            raise WireFormatError("error field codes are single ASCII characters other than NUL")
        body += code.encode() + cstr(value.replace("\x00", ""))
    body += b"\x00"
    return bytes(body)


def encode_error(
    sqlstate: str,
    message: str,
    *,
    severity: str = "ERROR",
    detail: str | None = None,
    hint: str | None = None,
) -> bytes:
    fields = _fields(severity, sqlstate, message, detail, hint)
    return frame(B_ERROR_RESPONSE, encode_fields(fields))


def encode_notice(
    message: str,
    *,
    sqlstate: str = "00000",
    severity: str = "NOTICE",
    detail: str | None = None,
    hint: str | None = None,
) -> bytes:
    fields = _fields(severity, sqlstate, message, detail, hint)
    return frame(B_NOTICE_RESPONSE, encode_fields(fields))


def _fields(
    severity: str, sqlstate: str, message: str, detail: str | None, hint: str | None
) -> dict[str, str]:
    fields = {"S": severity, "V": severity, "C": sqlstate, "M": message}
    if detail:
        fields["D"] = detail
    if hint:
        fields["H"] = hint
    return fields


def decode_notification(body: bytes | memoryview) -> tuple[int, str, str]:
    """A NotificationResponse: the notifying backend's pid, the channel and the payload."""
    reader = BodyReader(body)
    pid = reader.int32()
    channel = reader.cstring()
    payload = reader.cstring()
    reader.expect_end("NotificationResponse")
    return pid, channel, payload


def encode_notification(pid: int, channel: str, payload: str) -> bytes:
    return frame(B_NOTIFICATION_RESPONSE, struct.pack("!i", pid) + cstr(channel) + cstr(payload))

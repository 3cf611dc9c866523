"""Frontend (client -> server) messages: decoders for what Bastion inspects, encoders for what
Bastion itself sends upstream or tests send through Bastion.

Decoders take the message body (without type byte and length) and raise WireFormatError on any
inconsistency. Only the fields governance needs are decoded; the original bytes are relayed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from bastion.wire.postgres.codes import (
    F_BIND,
    F_CLOSE,
    F_COPY_DATA,
    F_COPY_DONE,
    F_COPY_FAIL,
    F_DESCRIBE,
    F_EXECUTE,
    F_FLUSH,
    F_PARSE,
    F_PASSWORD,
    F_QUERY,
    F_SYNC,
    F_TERMINATE,
)
from bastion.wire.postgres.errors import WireFormatError
from bastion.wire.postgres.framing import BodyReader, cstr, frame

MAX_PARAMETERS = 65535


@dataclass(frozen=True, slots=True)
class Parse:
    statement: str
    query: str
    param_types: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Bind:
    portal: str
    statement: str
    param_formats: tuple[int, ...]
    params: tuple[bytes | None, ...] = field(repr=False)
    result_formats: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Describe:
    kind: str  # "S" (statement) or "P" (portal)
    name: str


@dataclass(frozen=True, slots=True)
class Execute:
    portal: str
    max_rows: int


@dataclass(frozen=True, slots=True)
class Close:
    kind: str  # "S" or "P"
    name: str


@dataclass(frozen=True, slots=True)
class SASLInitialResponse:
    mechanism: str
    data: bytes | None = field(repr=False)


def decode_query(body: bytes | memoryview) -> str:
    reader = BodyReader(body)
    sql = reader.cstring()
    reader.expect_end("Query")
    return sql


def decode_parse(body: bytes | memoryview) -> Parse:
    reader = BodyReader(body)
    name = reader.cstring()
    query = reader.cstring()
    count = reader.uint16()
    types = tuple(reader.uint32() for _ in range(count))
    reader.expect_end("Parse")
    return Parse(statement=name, query=query, param_types=types)


def decode_bind_names(body: bytes | memoryview) -> tuple[str, str]:
    """The portal and statement names of a Bind, after checking the whole message's structure
    without copying its parameter values (what routing a reply needs, at less cost)."""
    portal, statement, _ = decode_bind_routing(body)
    return portal, statement


def decode_bind_routing(body: bytes | memoryview) -> tuple[str, str, tuple[int, ...]]:
    """decode_bind_names, plus the result format codes the client asked for."""
    data = bytes(body) if isinstance(body, memoryview) else body
    end = len(data)
    first = data.find(b"\x00")
    second = data.find(b"\x00", first + 1) if first >= 0 else -1
    if second < 0:
        raise WireFormatError("string is not NUL-terminated")
    try:
        portal, statement = data[:first].decode(), data[first + 1 : second].decode()
    except UnicodeDecodeError:
        raise WireFormatError("string is not valid UTF-8") from None
    pos = second + 1
    try:
        (formats,) = _UINT16.unpack_from(data, pos)
        for code in struct.unpack_from(f"!{formats}h", data, pos + 2):
            if code not in (0, 1):
                raise WireFormatError(f"invalid format code {code} in Bind")
        pos += 2 + 2 * formats
        (count,) = _UINT16.unpack_from(data, pos)
        if formats not in (0, 1, count):
            raise WireFormatError("Bind format codes do not match its parameters")
        pos += 2
        for _ in range(count):
            (size,) = _INT32.unpack_from(data, pos)
            if size < -1:
                raise WireFormatError("invalid parameter length in Bind")
            pos += 4 + max(size, 0)
        (results,) = _UINT16.unpack_from(data, pos)
        result_formats = struct.unpack_from(f"!{results}h", data, pos + 2)
        for code in result_formats:
            if code not in (0, 1):
                raise WireFormatError(f"invalid format code {code} in Bind")
        pos += 2 + 2 * results
    except struct.error:
        raise WireFormatError("message body is truncated") from None
    if pos != end:
        raise WireFormatError(
            "trailing bytes in Bind" if pos < end else "message body is truncated"
        )
    return portal, statement, tuple(result_formats)


_UINT16 = struct.Struct("!H")
_INT32 = struct.Struct("!i")


def decode_bind(body: bytes | memoryview) -> Bind:
    reader = BodyReader(body)
    portal = reader.cstring()
    statement = reader.cstring()
    formats = _int16_list(reader, "parameter format")
    count = reader.uint16()
    if len(formats) not in (0, 1, count):
        raise WireFormatError("Bind format codes do not match its parameters")
    params: list[bytes | None] = []
    for _ in range(count):
        size = reader.int32()
        if size == -1:
            params.append(None)
        elif size < -1:
            raise WireFormatError("invalid parameter length in Bind")
        else:
            params.append(reader.raw(size))
    result_formats = _int16_list(reader, "result format")
    reader.expect_end("Bind")
    for code in (*formats, *result_formats):
        if code not in (0, 1):
            raise WireFormatError(f"invalid format code {code} in Bind")
    return Bind(portal, statement, formats, tuple(params), result_formats)


def decode_describe(body: bytes | memoryview) -> Describe:
    kind, name = _kind_and_name(body, "Describe")
    return Describe(kind=kind, name=name)


def decode_close(body: bytes | memoryview) -> Close:
    kind, name = _kind_and_name(body, "Close")
    return Close(kind=kind, name=name)


def decode_execute(body: bytes | memoryview) -> Execute:
    reader = BodyReader(body)
    portal = reader.cstring()
    max_rows = reader.int32()
    reader.expect_end("Execute")
    if max_rows < 0:
        raise WireFormatError("negative row limit in Execute")
    return Execute(portal=portal, max_rows=max_rows)


def decode_password(body: bytes | memoryview) -> str:
    reader = BodyReader(body)
    value = reader.cstring()
    reader.expect_end("PasswordMessage")
    return value


def decode_sasl_initial(body: bytes | memoryview) -> SASLInitialResponse:
    reader = BodyReader(body)
    mechanism = reader.cstring()
    size = reader.int32()
    data = None if size == -1 else reader.raw(size)
    reader.expect_end("SASLInitialResponse")
    return SASLInitialResponse(mechanism=mechanism, data=data)


def _kind_and_name(body: bytes | memoryview, what: str) -> tuple[str, str]:
    reader = BodyReader(body)
    kind = chr(reader.byte())
    if kind not in ("S", "P"):
        raise WireFormatError(f"{what} must target a statement (S) or a portal (P)")
    name = reader.cstring()
    reader.expect_end(what)
    return kind, name


def _int16_list(reader: BodyReader, what: str) -> tuple[int, ...]:
    count = reader.uint16()
    return tuple(reader.int16() for _ in range(count))


# Encoders.


def _check_count(items: tuple[object, ...]) -> None:
    # Counts are uint16 on the wire; struct would raise its own error past that.
    if len(items) > MAX_PARAMETERS:
        raise WireFormatError(f"more than {MAX_PARAMETERS} items in one message")


def encode_query(sql: str) -> bytes:
    return frame(F_QUERY, cstr(sql))


def encode_parse(statement: str, query: str, param_types: tuple[int, ...] = ()) -> bytes:
    _check_count(param_types)
    body = (
        cstr(statement)
        + cstr(query)
        + struct.pack(f"!H{len(param_types)}I", len(param_types), *param_types)
    )
    return frame(F_PARSE, body)


def encode_bind(
    portal: str,
    statement: str,
    params: tuple[bytes | None, ...] = (),
    param_formats: tuple[int, ...] = (),
    result_formats: tuple[int, ...] = (),
) -> bytes:
    for items in (params, param_formats, result_formats):
        _check_count(items)
    body = bytearray(cstr(portal) + cstr(statement))
    body += struct.pack(f"!H{len(param_formats)}h", len(param_formats), *param_formats)
    body += struct.pack("!H", len(params))
    for value in params:
        if value is None:
            body += struct.pack("!i", -1)
        else:
            body += struct.pack("!i", len(value)) + value
    body += struct.pack(f"!H{len(result_formats)}h", len(result_formats), *result_formats)
    return frame(F_BIND, bytes(body))


def encode_describe(kind: str, name: str) -> bytes:
    return frame(F_DESCRIBE, kind.encode() + cstr(name))


def encode_execute(portal: str = "", max_rows: int = 0) -> bytes:
    return frame(F_EXECUTE, cstr(portal) + struct.pack("!i", max_rows))


def encode_close(kind: str, name: str) -> bytes:
    return frame(F_CLOSE, kind.encode() + cstr(name))


def encode_sync() -> bytes:
    return frame(F_SYNC)


def encode_flush() -> bytes:
    return frame(F_FLUSH)


def encode_terminate() -> bytes:
    return frame(F_TERMINATE)


def encode_password(password: str) -> bytes:
    return frame(F_PASSWORD, cstr(password))


def encode_sasl_initial(mechanism: str, data: bytes) -> bytes:
    return frame(F_PASSWORD, cstr(mechanism) + struct.pack("!i", len(data)) + data)


def encode_sasl_response(data: bytes) -> bytes:
    return frame(F_PASSWORD, data)


def encode_copy_data(data: bytes) -> bytes:
    return frame(F_COPY_DATA, data)


def encode_copy_done() -> bytes:
    return frame(F_COPY_DONE)


def encode_copy_fail(message: str) -> bytes:
    return frame(F_COPY_FAIL, cstr(message))

"""Hostile input and generated messages for the whole PostgreSQL codec.

Every decoder faces bytes an attacker controls, so on any input it either returns a value or
raises WireFormatError; IndexError, struct.error, UnicodeDecodeError, MemoryError and the like
are bugs. Valid messages drawn from strategies must survive encode -> decode unchanged.
"""

from __future__ import annotations

import contextlib
import itertools
import struct
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.wire.postgres import backend, frontend, startup
from bastion.wire.postgres.backend import Column
from bastion.wire.postgres.codes import (
    CANCEL_REQUEST_CODE,
    GSSENC_REQUEST_CODE,
    PROTOCOL_3_0,
    SSL_REQUEST_CODE,
)
from bastion.wire.postgres.errors import WireFormatError
from bastion.wire.postgres.framing import MessageReader, frame
from bastion.wire.postgres.startup import CancelRequest, StartupMessage

from .handmade import split_message

FUZZ = settings(max_examples=150, deadline=None)
ROUND_TRIP = settings(max_examples=75, deadline=None)

# Protocol strings: any text UTF-8 can carry, without NUL.
characters = st.characters(codec="utf-8", exclude_characters="\x00")
texts = st.text(characters, max_size=24)
names = st.text(characters, min_size=1, max_size=16)
uint16 = st.integers(0, 0xFFFF)
int16 = st.integers(-(1 << 15), (1 << 15) - 1)
uint32 = st.integers(0, 0xFFFFFFFF)
int32 = st.integers(-(1 << 31), (1 << 31) - 1)


def body_of(encoded: bytes) -> bytes:
    return split_message(encoded)[1]


def pg_string(text: str) -> bytes:
    return text.encode() + b"\x00"


def column_bytes(c: Column) -> bytes:
    return pg_string(c.name) + struct.pack(
        "!IhIhih", c.table_oid, c.attnum, c.type_oid, c.type_size, c.type_modifier, c.format
    )


columns = st.builds(Column, names, uint32, int16, uint32, int16, int32, int16)


@st.composite
def bind_arguments(
    draw: st.DrawFn,
) -> tuple[tuple[bytes | None, ...], tuple[int, ...], tuple[int, ...]]:
    params = tuple(draw(st.lists(st.none() | st.binary(max_size=16), max_size=8)))
    codes = st.sampled_from([0, 1])
    format_count = draw(st.sampled_from(sorted({0, 1, len(params)})))
    param_formats = tuple(draw(st.lists(codes, min_size=format_count, max_size=format_count)))
    result_formats = tuple(draw(st.lists(codes, max_size=8)))
    return params, param_formats, result_formats


def framed(
    encode: Callable[..., bytes], *args: st.SearchStrategy[Any], **kwargs: st.SearchStrategy[Any]
) -> st.SearchStrategy[bytes]:
    """Bodies of messages an encoder builds from generated arguments."""
    return st.builds(encode, *args, **kwargs).map(body_of)


def bind_message(
    name: str, args: tuple[tuple[bytes | None, ...], tuple[int, ...], tuple[int, ...]]
) -> bytes:
    return frontend.encode_bind(name, name, *args)


keys = st.binary(min_size=4, max_size=8)
row_limits = st.integers(0, (1 << 31) - 1)

# Valid bodies that mutations start from, so fuzzing reaches past the first field.
VALID_BODIES: dict[str, st.SearchStrategy[bytes]] = {
    "query": framed(frontend.encode_query, texts),
    "parse": framed(frontend.encode_parse, texts, texts, st.lists(uint32, max_size=4).map(tuple)),
    "bind": framed(bind_message, texts, bind_arguments()),
    "describe": framed(frontend.encode_describe, st.sampled_from("SP"), texts),
    "execute": framed(frontend.encode_execute, texts, row_limits),
    "password": framed(frontend.encode_password, texts),
    "sasl_initial": framed(frontend.encode_sasl_initial, names, st.binary(max_size=16)),
    "authentication": framed(backend.encode_authentication_sasl, st.lists(names, max_size=3)),
    "sasl_mechanisms": st.lists(names, max_size=3).map(
        lambda ms: b"".join(map(pg_string, ms)) + b"\x00"
    ),
    "backend_key_data": framed(backend.encode_backend_key_data, uint32, keys),
    "parameter_status": framed(backend.encode_parameter_status, texts, texts),
    "ready_for_query": st.sampled_from([b"I", b"T", b"E"]),
    "fields": framed(backend.encode_error, texts, texts, detail=texts, hint=texts),
    "command_complete": texts.map(pg_string),
    "row_description": st.lists(columns, max_size=3).map(
        lambda cs: struct.pack("!h", len(cs)) + b"".join(map(column_bytes, cs))
    ),
    "notification": st.builds(
        lambda pid, channel, payload: backend.encode_notification(pid, channel, payload)[5:],
        st.integers(-(2**31), 2**31 - 1),
        texts,
        texts,
    ),
    "parameter_description": st.lists(uint32, max_size=4).map(
        lambda oids: struct.pack(f"!h{len(oids)}I", len(oids), *oids)
    ),
    "startup": st.one_of(
        st.builds(
            startup.encode_startup_message, st.dictionaries(names, texts, max_size=4), uint16
        ),
        st.builds(startup.encode_cancel_request, uint32, keys),
        st.just(startup.encode_ssl_request()),
    ).map(lambda packet: packet[4:]),
}


@st.composite
def mutated(draw: st.DrawFn, seeds: st.SearchStrategy[bytes]) -> bytes:
    """A valid body with a few bytes flipped, cut, inserted or removed."""
    data = bytearray(draw(seeds))
    for _ in range(draw(st.integers(1, 3))):
        position = draw(st.integers(0, len(data)))
        operation = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        if operation == "flip" and position < len(data):
            data[position] = draw(st.integers(0, 255))
        elif operation == "cut":
            del data[position:]
        elif operation == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=4))
        else:
            del data[position : position + draw(st.integers(1, 4))]
    return bytes(data)


def hostile(seed: str) -> st.SearchStrategy[bytes]:
    return st.binary(max_size=64) | mutated(VALID_BODIES[seed])


DECODERS: list[tuple[str, Callable[[bytes], object]]] = [
    ("query", frontend.decode_query),
    ("parse", frontend.decode_parse),
    ("bind", frontend.decode_bind),
    ("bind", frontend.decode_bind_names),
    ("bind", frontend.decode_bind_routing),
    ("describe", frontend.decode_describe),
    ("describe", frontend.decode_close),
    ("execute", frontend.decode_execute),
    ("password", frontend.decode_password),
    ("sasl_initial", frontend.decode_sasl_initial),
    ("authentication", backend.decode_authentication),
    ("sasl_mechanisms", backend.decode_sasl_mechanisms),
    ("backend_key_data", backend.decode_backend_key_data),
    ("parameter_status", backend.decode_parameter_status),
    ("ready_for_query", backend.decode_ready_for_query),
    ("fields", backend.decode_fields),
    ("command_complete", backend.decode_command_complete),
    ("row_description", backend.decode_row_description),
    ("parameter_description", backend.decode_parameter_description),
    ("notification", backend.decode_notification),
    ("startup", startup.parse_startup_packet),
]


def test_every_decoder_is_fuzzed() -> None:
    decoders = {name for name in dir(frontend) + dir(backend) if name.startswith("decode_")}
    assert decoders == {
        decode.__name__ for _, decode in DECODERS if decode.__module__ != startup.__name__
    }


@pytest.mark.parametrize(
    ("seed", "decode"), DECODERS, ids=[decode.__name__ for _, decode in DECODERS]
)
@FUZZ
@given(data=st.data())
def test_decoder_raises_only_wire_format_errors(
    seed: str, decode: Callable[[bytes], object], data: st.DataObject
) -> None:
    body = data.draw(hostile(seed), label="body")
    with contextlib.suppress(WireFormatError):
        decode(body)


@FUZZ
@given(
    code=st.sampled_from(
        [SSL_REQUEST_CODE, GSSENC_REQUEST_CODE, CANCEL_REQUEST_CODE, PROTOCOL_3_0, PROTOCOL_3_0 | 2]
    ),
    rest=st.binary(max_size=300),
)
def test_startup_packet_behind_a_known_code_raises_only_wire_format_errors(
    code: int, rest: bytes
) -> None:
    with contextlib.suppress(WireFormatError):
        startup.parse_startup_packet(struct.pack("!I", code) + rest)


@FUZZ
@given(header=st.binary(max_size=6), max_length=st.integers(0, 1 << 32))
def test_startup_length_raises_only_wire_format_errors(header: bytes, max_length: int) -> None:
    try:
        body_length = startup.startup_length(header, max_length)
    except WireFormatError:
        return
    assert 4 <= body_length <= max_length - 4


@FUZZ
@given(chunks=st.lists(st.binary(max_size=40), max_size=8), max_length=st.integers(0, 1 << 20))
def test_message_reader_raises_only_wire_format_errors(
    chunks: list[bytes], max_length: int
) -> None:
    reader = MessageReader(max_length)
    received = b""
    try:
        for chunk in chunks:
            reader.feed(chunk)
            while (item := reader.next_message()) is not None:
                type_byte, body = item
                assert 4 <= len(body) + 4 <= max_length
                received += frame(type_byte, body)
    except WireFormatError:
        return
    # Without an error nothing is lost or invented: what came out plus what is left is the input.
    assert received + reader.take_remaining() == b"".join(chunks)


# Round trips: encode -> decode gives back the same values.


@ROUND_TRIP
@given(sql=texts)
def test_query_round_trip(sql: str) -> None:
    assert frontend.decode_query(body_of(frontend.encode_query(sql))) == sql


@ROUND_TRIP
@given(statement=texts, query=texts, types=st.lists(uint32, max_size=8).map(tuple))
def test_parse_round_trip(statement: str, query: str, types: tuple[int, ...]) -> None:
    decoded = frontend.decode_parse(body_of(frontend.encode_parse(statement, query, types)))
    assert decoded == frontend.Parse(statement, query, types)


@ROUND_TRIP
@given(portal=texts, statement=texts, args=bind_arguments())
def test_bind_round_trip(
    portal: str,
    statement: str,
    args: tuple[tuple[bytes | None, ...], tuple[int, ...], tuple[int, ...]],
) -> None:
    params, param_formats, result_formats = args
    encoded = frontend.encode_bind(portal, statement, params, param_formats, result_formats)
    assert frontend.decode_bind(body_of(encoded)) == frontend.Bind(
        portal, statement, param_formats, params, result_formats
    )


@ROUND_TRIP
@given(kind=st.sampled_from("SP"), name=texts)
def test_describe_and_close_round_trip(kind: str, name: str) -> None:
    described = frontend.decode_describe(body_of(frontend.encode_describe(kind, name)))
    closed = frontend.decode_close(body_of(frontend.encode_close(kind, name)))
    assert described == frontend.Describe(kind, name)
    assert closed == frontend.Close(kind, name)


@ROUND_TRIP
@given(portal=texts, max_rows=st.integers(0, (1 << 31) - 1))
def test_execute_round_trip(portal: str, max_rows: int) -> None:
    decoded = frontend.decode_execute(body_of(frontend.encode_execute(portal, max_rows)))
    assert decoded == frontend.Execute(portal, max_rows)


@ROUND_TRIP
@given(password=texts, mechanism=names, data=st.binary(max_size=64))
def test_password_and_sasl_round_trip(password: str, mechanism: str, data: bytes) -> None:
    assert frontend.decode_password(body_of(frontend.encode_password(password))) == password
    initial = frontend.decode_sasl_initial(body_of(frontend.encode_sasl_initial(mechanism, data)))
    assert initial == frontend.SASLInitialResponse(mechanism, data)


@ROUND_TRIP
@given(
    parameters=st.dictionaries(names, texts, max_size=startup.MAX_STARTUP_PARAMETERS),
    minor=uint16,
)
def test_startup_message_round_trip(parameters: dict[str, str], minor: int) -> None:
    packet = startup.encode_startup_message(parameters, minor)
    assert startup.startup_length(packet[:4], len(packet)) == len(packet) - 4
    assert startup.parse_startup_packet(packet[4:]) == StartupMessage(3, minor, parameters)


@ROUND_TRIP
@given(process_id=uint32, key=st.binary(min_size=4, max_size=startup.MAX_CANCEL_KEY_BYTES))
def test_cancel_request_round_trip(process_id: int, key: bytes) -> None:
    packet = startup.encode_cancel_request(process_id, key)
    assert startup.startup_length(packet[:4], len(packet)) == len(packet) - 4
    assert startup.parse_startup_packet(packet[4:]) == CancelRequest(process_id, key)


@ROUND_TRIP
@given(mechanisms=st.lists(names, max_size=4).map(tuple))
def test_sasl_mechanisms_round_trip(mechanisms: tuple[str, ...]) -> None:
    auth = backend.decode_authentication(body_of(backend.encode_authentication_sasl(mechanisms)))
    assert auth.code == 10
    assert backend.decode_sasl_mechanisms(auth.payload) == mechanisms


@ROUND_TRIP
@given(code=st.sampled_from([11, 12]), data=st.binary(max_size=64))
def test_sasl_continue_and_final_round_trip(code: int, data: bytes) -> None:
    encode = {
        11: backend.encode_authentication_sasl_continue,
        12: backend.encode_authentication_sasl_final,
    }[code]
    assert backend.decode_authentication(body_of(encode(data))) == backend.Authentication(
        code, data
    )


@ROUND_TRIP
@given(process_id=uint32, key=st.binary(min_size=4, max_size=256))
def test_backend_key_data_round_trip(process_id: int, key: bytes) -> None:
    encoded = backend.encode_backend_key_data(process_id, key)
    decoded = backend.decode_backend_key_data(body_of(encoded))
    assert decoded == backend.BackendKeyData(process_id, key)


@ROUND_TRIP
@given(name=texts, value=texts, status=st.sampled_from([ord("I"), ord("T"), ord("E")]))
def test_parameter_status_and_ready_for_query_round_trip(
    name: str, value: str, status: int
) -> None:
    status_body = body_of(backend.encode_parameter_status(name, value))
    assert backend.decode_parameter_status(status_body) == (name, value)
    assert backend.decode_ready_for_query(body_of(backend.encode_ready_for_query(status))) == status


@ROUND_TRIP
@given(fields=st.dictionaries(st.characters(min_codepoint=1, max_codepoint=127), texts, max_size=8))
def test_fields_round_trip(fields: dict[str, str]) -> None:
    assert backend.decode_fields(backend.encode_fields(fields)) == fields


@ROUND_TRIP
@given(sqlstate=texts, message=texts, detail=texts, hint=texts)
def test_error_round_trip(sqlstate: str, message: str, detail: str, hint: str) -> None:
    decoded = backend.decode_fields(
        body_of(backend.encode_error(sqlstate, message, detail=detail, hint=hint))
    )
    assert decoded["C"] == sqlstate
    assert decoded["M"] == message
    assert decoded.get("D", "") == detail
    assert decoded.get("H", "") == hint


@ROUND_TRIP
@given(columns=st.lists(columns, max_size=6).map(tuple))
def test_row_description_round_trip(columns: tuple[Column, ...]) -> None:
    body = struct.pack("!h", len(columns)) + b"".join(map(column_bytes, columns))
    assert backend.decode_row_description(body) == columns


@ROUND_TRIP
@given(
    messages=st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=32)), max_size=6),
    cuts=st.lists(st.integers(0, 300), max_size=10),
)
def test_message_reader_round_trip(messages: list[tuple[int, bytes]], cuts: list[int]) -> None:
    stream = b"".join(frame(t, b) for t, b in messages)
    points = [0, *sorted(min(c, len(stream)) for c in cuts), len(stream)]
    reader = MessageReader(1 << 16)
    received = []
    for start, end in itertools.pairwise(points):
        reader.feed(stream[start:end])
        while (item := reader.next_message()) is not None:
            received.append(item)
    assert received == messages
    assert len(reader) == 0


@ROUND_TRIP
@given(oids=st.lists(uint32, max_size=6))
def test_parameter_description_round_trip(oids: list[int]) -> None:
    body = struct.pack(f"!h{len(oids)}I", len(oids), *oids)
    assert backend.decode_parameter_description(body) == tuple(oids)

"""Frontend messages: hand-built bodies in, typed values out; encoders byte for byte and back."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

from bastion.wire.postgres.errors import WireFormatError
from bastion.wire.postgres.frontend import (
    Bind,
    Close,
    Describe,
    Execute,
    Parse,
    SASLInitialResponse,
    decode_bind,
    decode_bind_names,
    decode_close,
    decode_describe,
    decode_execute,
    decode_parse,
    decode_password,
    decode_query,
    decode_sasl_initial,
    encode_bind,
    encode_close,
    encode_copy_data,
    encode_copy_done,
    encode_copy_fail,
    encode_describe,
    encode_execute,
    encode_flush,
    encode_parse,
    encode_password,
    encode_query,
    encode_sasl_initial,
    encode_sasl_response,
    encode_sync,
    encode_terminate,
)

from .handmade import message, split_message, strictly_shorter, string

# The most parameters one statement can have: libpq and the server treat the count as uint16.
MOST_PARAMETERS = 65535


def int16s(*values: int) -> bytes:
    """An Int16 count followed by that many Int16 values."""
    return struct.pack(f"!h{len(values)}h", len(values), *values)


def bind_values(*values: bytes | None) -> bytes:
    """The parameter-value section of a Bind: Int16 count, then Int32 length + bytes each."""
    out = struct.pack("!h", len(values))
    for value in values:
        out += struct.pack("!i", -1) if value is None else struct.pack("!i", len(value)) + value
    return out


QUERY = string("SELECT * FROM orders WHERE note = 'café'")
PARSE = string("s1") + string("SELECT $1::int, $2") + struct.pack("!hII", 2, 23, 0xFFFFFFFF)
BIND = string("p1") + string("s1") + int16s(0, 1, 0) + bind_values(b"42", None, b"") + int16s(1)
DESCRIBE = b"S" + string("s1")
CLOSE = b"P" + string("p1")
EXECUTE = string("p1") + struct.pack("!i", 100)
PASSWORD = string("correct horse")
SASL_INITIAL = string("SCRAM-SHA-256") + struct.pack("!i", 12) + b"n,,n=,r=abcd"

DECODERS: list[tuple[Callable[[bytes], object], bytes]] = [
    (decode_query, QUERY),
    (decode_parse, PARSE),
    (decode_bind, BIND),
    (decode_describe, DESCRIBE),
    (decode_close, CLOSE),
    (decode_execute, EXECUTE),
    (decode_password, PASSWORD),
    (decode_sasl_initial, SASL_INITIAL),
]
DECODER_IDS = [decoder.__name__ for decoder, _ in DECODERS]


# Malformations shared by every frontend decoder: each of these bodies is complete and valid,
# and nothing after its last field is allowed.


@pytest.mark.parametrize(("decode", "body"), DECODERS, ids=DECODER_IDS)
def test_every_truncation_is_rejected(decode: Callable[[bytes], object], body: bytes) -> None:
    decode(body)
    for prefix in strictly_shorter(body):
        with pytest.raises(WireFormatError):
            decode(prefix)


@pytest.mark.parametrize(("decode", "body"), DECODERS, ids=DECODER_IDS)
@pytest.mark.parametrize("extra", [b"\x00", b"x", b"\x00\x00\x00\x00"])
def test_trailing_bytes_are_rejected(
    decode: Callable[[bytes], object], body: bytes, extra: bytes
) -> None:
    with pytest.raises(WireFormatError, match="trailing bytes"):
        decode(body + extra)


@pytest.mark.parametrize(("decode", "body"), DECODERS, ids=DECODER_IDS)
def test_memoryview_body_decodes_like_bytes(
    decode: Callable[[bytes | memoryview], object], body: bytes
) -> None:
    assert decode(memoryview(body)) == decode(body)


# Query.


def test_query() -> None:
    assert decode_query(QUERY) == "SELECT * FROM orders WHERE note = 'café'"


def test_empty_query() -> None:
    assert decode_query(b"\x00") == ""


def test_query_with_invalid_utf8_is_rejected() -> None:
    with pytest.raises(WireFormatError, match="UTF-8"):
        decode_query(b"SELECT '\xff'\x00")


def test_query_with_a_second_statement_after_a_nul_is_rejected() -> None:
    # A proxy that stopped at the first NUL would inspect one statement and relay two.
    with pytest.raises(WireFormatError, match="trailing"):
        decode_query(b"SELECT 1\x00DROP TABLE orders\x00")


# Parse.


def test_parse() -> None:
    assert decode_parse(PARSE) == Parse(
        statement="s1", query="SELECT $1::int, $2", param_types=(23, 0xFFFFFFFF)
    )


def test_parse_unnamed_without_types() -> None:
    body = string("") + string("SELECT 1") + struct.pack("!h", 0)
    assert decode_parse(body) == Parse(statement="", query="SELECT 1", param_types=())


@pytest.mark.parametrize("count", [3, 0x7FFF, 0x8000, 0xFFFF])
def test_parse_count_beyond_the_types_present_is_rejected(count: int) -> None:
    # 0x8000 and up read as negative through a signed Int16, as a huge count through an
    # unsigned one; either way the body cannot hold that many types.
    body = string("") + string("q") + struct.pack("!HII", count, 23, 25)
    with pytest.raises(WireFormatError):
        decode_parse(body)


def test_parse_count_below_the_types_present_is_rejected() -> None:
    body = string("") + string("q") + struct.pack("!hII", 1, 23, 25)
    with pytest.raises(WireFormatError, match="trailing"):
        decode_parse(body)


def test_parse_without_a_query_terminator_is_rejected() -> None:
    with pytest.raises(WireFormatError):
        decode_parse(string("s1") + b"SELECT 1")


def test_parse_with_the_most_parameters() -> None:
    types = tuple(range(1, MOST_PARAMETERS + 1))
    body = string("") + string("q") + struct.pack(f"!H{MOST_PARAMETERS}I", MOST_PARAMETERS, *types)
    assert decode_parse(body).param_types == types


# Bind.


def test_bind() -> None:
    assert decode_bind(BIND) == Bind(
        portal="p1",
        statement="s1",
        param_formats=(0, 1, 0),
        params=(b"42", None, b""),
        result_formats=(1,),
    )


def test_bind_without_parameters_or_formats() -> None:
    body = string("") + string("") + int16s() + bind_values() + int16s()
    assert decode_bind(body) == Bind("", "", (), (), ())


def test_bind_one_format_for_all_parameters() -> None:
    body = string("") + string("s") + int16s(1) + bind_values(b"\x00\x01", b"\xff") + int16s(0, 1)
    assert decode_bind(body) == Bind("", "s", (1,), (b"\x00\x01", b"\xff"), (0, 1))


def test_bind_one_format_without_parameters() -> None:
    # The server accepts a single format code even when no parameter follows.
    body = string("") + string("") + int16s(1) + bind_values() + int16s()
    assert decode_bind(body) == Bind("", "", (1,), (), ())


def test_bind_parameter_values_are_opaque_bytes() -> None:
    value = bytes(range(256))
    body = string("") + string("") + int16s(1) + bind_values(value) + int16s()
    assert decode_bind(body).params == (value,)


@pytest.mark.parametrize(("formats", "values"), [(2, 3), (3, 2), (2, 0), (2, 1)])
def test_bind_format_count_must_match_the_parameters(formats: int, values: int) -> None:
    body = (
        string("") + string("") + int16s(*[0] * formats) + bind_values(*[b"x"] * values) + int16s()
    )
    with pytest.raises(WireFormatError, match="format codes do not match"):
        decode_bind(body)


@pytest.mark.parametrize(
    ("param_formats", "result_formats"),
    [((2,), ()), ((-1,), ()), ((0, 1, 2), ()), ((0,), (2,)), ((0,), (1, 0, -1)), ((), (0x100,))],
)
def test_bind_invalid_format_codes_are_rejected(
    param_formats: tuple[int, ...], result_formats: tuple[int, ...]
) -> None:
    values = [b"v"] * len(param_formats)
    body = (
        string("")
        + string("")
        + int16s(*param_formats)
        + bind_values(*values)
        + int16s(*result_formats)
    )
    with pytest.raises(WireFormatError, match="invalid format code"):
        decode_bind(body)


@pytest.mark.parametrize("length", [-2, -(1 << 31)])
def test_bind_parameter_length_below_minus_one_is_rejected(length: int) -> None:
    body = string("") + string("") + int16s() + struct.pack("!hi", 1, length) + int16s()
    with pytest.raises(WireFormatError, match="invalid parameter length"):
        decode_bind(body)


@pytest.mark.parametrize("length", [5, 0x7FFFFFFF])
def test_bind_parameter_longer_than_the_body_is_rejected(length: int) -> None:
    body = string("") + string("") + int16s() + struct.pack("!hi", 1, length) + b"abc" + int16s()
    with pytest.raises(WireFormatError):
        decode_bind(body)


@pytest.mark.parametrize("section", ["param formats", "values", "result formats"])
@pytest.mark.parametrize("count", [0x8000, 0xFFFF])
def test_bind_counts_beyond_the_body_are_rejected(section: str, count: int) -> None:
    # 0x8000 and up read as negative through a signed Int16, as a huge count through an
    # unsigned one; either way the body cannot hold that many items.
    big = struct.pack("!H", count)
    parts = {
        "param formats": big + bind_values() + int16s(),
        "values": int16s() + big + struct.pack("!i", -1) + int16s(),
        "result formats": int16s() + bind_values() + big + struct.pack("!h", 0),
    }
    with pytest.raises(WireFormatError):
        decode_bind(string("") + string("") + parts[section])


def test_bind_without_a_statement_terminator_is_rejected() -> None:
    with pytest.raises(WireFormatError):
        decode_bind(string("p") + b"s")


def test_bind_with_the_most_parameters() -> None:
    body = (
        string("")
        + string("")
        + struct.pack("!h", 0)
        + struct.pack("!H", MOST_PARAMETERS)
        + struct.pack("!i", -1) * MOST_PARAMETERS
        + struct.pack("!h", 0)
    )
    assert decode_bind(body).params == (None,) * MOST_PARAMETERS


# Describe and Close.


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"S" + string("s1"), Describe(kind="S", name="s1")),
        (b"P" + string(""), Describe(kind="P", name="")),
    ],
)
def test_describe(body: bytes, expected: Describe) -> None:
    assert decode_describe(body) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"S" + string("s1"), Close(kind="S", name="s1")),
        (b"P" + string("curs"), Close(kind="P", name="curs")),
    ],
)
def test_close(body: bytes, expected: Close) -> None:
    assert decode_close(body) == expected


@pytest.mark.parametrize("decode", [decode_describe, decode_close])
@pytest.mark.parametrize("kind", [b"X", b"s", b"p", b"\x00", b"\xff"])
def test_bad_describe_or_close_kind_is_rejected(
    decode: Callable[[bytes], object], kind: bytes
) -> None:
    with pytest.raises(WireFormatError, match=r"statement \(S\) or a portal \(P\)"):
        decode(kind + string("x"))


@pytest.mark.parametrize("decode", [decode_describe, decode_close])
def test_describe_or_close_without_name_terminator_is_rejected(
    decode: Callable[[bytes], object],
) -> None:
    with pytest.raises(WireFormatError, match="NUL-terminated"):
        decode(b"Sname")


# Execute.


@pytest.mark.parametrize("max_rows", [0, 1, 100, 0x7FFFFFFF])
def test_execute(max_rows: int) -> None:
    body = string("p1") + struct.pack("!i", max_rows)
    assert decode_execute(body) == Execute(portal="p1", max_rows=max_rows)


@pytest.mark.parametrize("max_rows", [-1, -(1 << 31)])
def test_execute_negative_row_limit_is_rejected(max_rows: int) -> None:
    with pytest.raises(WireFormatError, match="negative row limit"):
        decode_execute(string("") + struct.pack("!i", max_rows))


# PasswordMessage and SASLInitialResponse.


def test_password() -> None:
    assert decode_password(PASSWORD) == "correct horse"


def test_sasl_initial_response() -> None:
    assert decode_sasl_initial(SASL_INITIAL) == SASLInitialResponse(
        mechanism="SCRAM-SHA-256", data=b"n,,n=,r=abcd"
    )


def test_sasl_initial_response_without_data() -> None:
    body = string("SCRAM-SHA-256") + struct.pack("!i", -1)
    assert decode_sasl_initial(body) == SASLInitialResponse("SCRAM-SHA-256", None)


def test_sasl_initial_response_with_empty_data() -> None:
    body = string("SCRAM-SHA-256") + struct.pack("!i", 0)
    assert decode_sasl_initial(body) == SASLInitialResponse("SCRAM-SHA-256", b"")


@pytest.mark.parametrize("length", [-2, -(1 << 31)])
def test_sasl_initial_response_negative_length_is_rejected(length: int) -> None:
    with pytest.raises(WireFormatError, match="negative"):
        decode_sasl_initial(string("SCRAM-SHA-256") + struct.pack("!i", length))


def test_sasl_initial_response_length_beyond_the_body_is_rejected() -> None:
    body = string("SCRAM-SHA-256") + struct.pack("!i", 13) + b"n,,n=,r=abcd"
    with pytest.raises(WireFormatError, match="truncated"):
        decode_sasl_initial(body)


# Encoders: exact bytes, then back through the decoder.


def test_query_encoder() -> None:
    encoded = encode_query("SELECT 'é'")
    assert encoded == message("Q", string("SELECT 'é'"))
    assert decode_query(split_message(encoded)[1]) == "SELECT 'é'"


@pytest.mark.parametrize("types", [(), (23,), (0, 25, 0xFFFFFFFF)])
def test_parse_encoder(types: tuple[int, ...]) -> None:
    encoded = encode_parse("s1", "SELECT $1", types)
    assert encoded == message(
        "P",
        string("s1") + string("SELECT $1") + struct.pack(f"!h{len(types)}I", len(types), *types),
    )
    assert decode_parse(split_message(encoded)[1]) == Parse("s1", "SELECT $1", types)


def test_parse_encoder_with_the_most_parameters() -> None:
    types = (23,) * MOST_PARAMETERS
    kind, body = split_message(encode_parse("", "q", types))
    assert kind == "P"
    assert decode_parse(body).param_types == types


def test_bind_encoder() -> None:
    encoded = encode_bind("p1", "s1", (b"42", None, b""), (0, 1, 0), (1,))
    assert encoded == message("B", BIND)
    assert decode_bind(split_message(encoded)[1]) == Bind(
        "p1", "s1", (0, 1, 0), (b"42", None, b""), (1,)
    )


def test_bind_encoder_defaults() -> None:
    assert encode_bind("", "") == message("B", b"\x00\x00" + b"\x00\x00" * 3)


def test_bind_encoder_with_the_most_parameters() -> None:
    params = (None,) * MOST_PARAMETERS
    kind, body = split_message(encode_bind("", "", params))
    assert kind == "B"
    assert decode_bind(body).params == params


@pytest.mark.parametrize(
    "encode",
    [
        lambda: encode_parse("", "q", (23,) * (MOST_PARAMETERS + 1)),
        lambda: encode_bind("", "", (None,) * (MOST_PARAMETERS + 1)),
        lambda: encode_bind("", "", (), (), (0,) * (MOST_PARAMETERS + 1)),
    ],
    ids=["parse types", "bind values", "bind result formats"],
)
def test_encoders_refuse_more_items_than_a_count_can_hold(encode: Callable[[], bytes]) -> None:
    with pytest.raises(WireFormatError):
        encode()


@pytest.mark.parametrize("kind", ["S", "P"])
def test_describe_and_close_encoders(kind: str) -> None:
    described = encode_describe(kind, "name")
    closed = encode_close(kind, "name")
    assert described == message("D", kind.encode() + string("name"))
    assert closed == message("C", kind.encode() + string("name"))
    assert decode_describe(split_message(described)[1]) == Describe(kind, "name")
    assert decode_close(split_message(closed)[1]) == Close(kind, "name")


def test_execute_encoder() -> None:
    assert encode_execute() == message("E", b"\x00" + b"\x00\x00\x00\x00")
    encoded = encode_execute("p1", 50)
    assert encoded == message("E", string("p1") + struct.pack("!i", 50))
    assert decode_execute(split_message(encoded)[1]) == Execute("p1", 50)


def test_password_encoder() -> None:
    encoded = encode_password("md5abc")
    assert encoded == message("p", string("md5abc"))
    assert decode_password(split_message(encoded)[1]) == "md5abc"


def test_sasl_encoders() -> None:
    first = b"n,,n=,r=rOprNGfwEbeRWgbNEkqO"
    encoded = encode_sasl_initial("SCRAM-SHA-256", first)
    assert encoded == message("p", string("SCRAM-SHA-256") + struct.pack("!i", len(first)) + first)
    assert decode_sasl_initial(split_message(encoded)[1]) == SASLInitialResponse(
        "SCRAM-SHA-256", first
    )
    final = b"c=biws,r=rOprNGfwEbeRWgbNEkqO,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    assert encode_sasl_response(final) == message("p", final)


@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        (encode_sync(), b"S\x00\x00\x00\x04"),
        (encode_flush(), b"H\x00\x00\x00\x04"),
        (encode_terminate(), b"X\x00\x00\x00\x04"),
        (encode_copy_done(), b"c\x00\x00\x00\x04"),
        (encode_copy_data(b"1\t2\n"), b"d\x00\x00\x00\x081\t2\n"),
        (encode_copy_fail("bad row"), b"f\x00\x00\x00\x0cbad row\x00"),
    ],
)
def test_fixed_encoders(encoded: bytes, expected: bytes) -> None:
    assert encoded == expected


@pytest.mark.parametrize(
    "encode",
    [
        lambda: encode_query("SELECT 1\x00DROP TABLE t"),
        lambda: encode_parse("s\x00", "SELECT 1"),
        lambda: encode_parse("s", "SELECT\x00 1"),
        lambda: encode_bind("p\x00", "s"),
        lambda: encode_bind("p", "s\x00"),
        lambda: encode_describe("S", "a\x00b"),
        lambda: encode_close("P", "a\x00b"),
        lambda: encode_execute("p\x00"),
        lambda: encode_password("pw\x00"),
        lambda: encode_sasl_initial("SCRAM\x00", b""),
        lambda: encode_copy_fail("oops\x00"),
    ],
    ids=[
        "query", "parse name", "parse query", "bind portal", "bind statement", "describe",
        "close", "execute", "password", "sasl mechanism", "copy fail",
    ],
)  # fmt: skip
def test_encoders_refuse_nul_in_strings(encode: Callable[[], bytes]) -> None:
    with pytest.raises(WireFormatError, match="NUL"):
        encode()


@pytest.mark.parametrize(("portal", "statement"), [("", ""), ("p1", "s1"), ("pörtal", "x" * 600)])
def test_bind_names_agree_with_the_full_decoder(portal: str, statement: str) -> None:
    encoded = encode_bind(portal, statement, (b"1", None), (0,), (1,))
    body = encoded[5:]
    assert decode_bind_names(body) == (portal, statement)
    full = decode_bind(body)
    assert (full.portal, full.statement) == (portal, statement)


def test_bind_names_of_a_truncated_bind() -> None:
    with pytest.raises(WireFormatError):
        decode_bind_names(b"portal\x00statement-without-end")


@pytest.mark.parametrize("cut", [1, 5, 9, 12])
def test_bind_names_check_the_whole_structure(cut: int) -> None:
    body = encode_bind("p", "s", (b"12345", None), (0,), (1, 0))[5:]
    assert decode_bind_names(body) == ("p", "s")
    with pytest.raises(WireFormatError):
        decode_bind_names(body[:-cut])
    with pytest.raises(WireFormatError):
        decode_bind_names(body + b"\x00")

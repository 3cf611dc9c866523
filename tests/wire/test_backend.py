"""Backend messages: hand-built bodies in, typed values out; encoders byte for byte and back."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest

from bastion.wire.postgres.backend import (
    Authentication,
    BackendKeyData,
    Column,
    decode_authentication,
    decode_backend_key_data,
    decode_command_complete,
    decode_fields,
    decode_parameter_status,
    decode_ready_for_query,
    decode_row_description,
    decode_sasl_mechanisms,
    encode_authentication_cleartext,
    encode_authentication_ok,
    encode_authentication_sasl,
    encode_authentication_sasl_continue,
    encode_authentication_sasl_final,
    encode_backend_key_data,
    encode_error,
    encode_fields,
    encode_negotiate_protocol_version,
    encode_notice,
    encode_parameter_status,
    encode_ready_for_query,
)
from bastion.wire.postgres.codes import TX_FAILED, TX_IDLE, TX_IN_BLOCK
from bastion.wire.postgres.errors import WireFormatError

from .handmade import message, split_message, strictly_shorter, string


def column(
    name: str, table: int, attnum: int, type_oid: int, size: int, typmod: int, fmt: int
) -> bytes:
    """One RowDescription field, in the order the protocol documents."""
    return string(name) + struct.pack("!IhIhih", table, attnum, type_oid, size, typmod, fmt)


def fields(*pairs: tuple[str, str]) -> bytes:
    """An ErrorResponse/NoticeResponse body: code byte + String per field, then a zero byte."""
    return b"".join(code.encode() + string(value) for code, value in pairs) + b"\x00"


ROW_DESCRIPTION = struct.pack("!h", 4) + b"".join(
    [
        column("id", 16384, 1, 23, 4, -1, 0),
        column("email", 16384, 2, 25, -1, -1, 0),
        # numeric(10,2): typmod is ((10 << 16) | 2) + 4; an expression has no table or attnum.
        column("total", 0, 0, 1700, -1, 655366, 1),
        column("prénom", 3_000_000_000, 32767, 0xFFFFFFFF, -2, -2147483648, 1),
    ]
)
COLUMNS = (
    Column("id", 16384, 1, 23, 4, -1, 0),
    Column("email", 16384, 2, 25, -1, -1, 0),
    Column("total", 0, 0, 1700, -1, 655366, 1),
    Column("prénom", 3_000_000_000, 32767, 0xFFFFFFFF, -2, -2147483648, 1),
)
ERROR_FIELDS = (
    ("S", "ERROR"),
    ("V", "ERROR"),
    ("C", "42P01"),
    ("M", 'relation "ordres" does not exist'),
    ("P", "15"),
    ("F", "parse_relation.c"),
    ("L", "1449"),
    ("R", "parserOpenTable"),
)
MECHANISMS = string("SCRAM-SHA-256-PLUS") + string("SCRAM-SHA-256") + b"\x00"
PARAMETER_STATUS = string("server_version") + string("17.2")
COMMAND_COMPLETE = string("INSERT 0 5")
ERROR_BODY = fields(*ERROR_FIELDS)

# Decoders whose body ends at a terminator or a fixed size: nothing may follow, and every
# proper prefix is incomplete.
STRICT_DECODERS: list[tuple[Callable[[bytes], object], bytes]] = [
    (decode_sasl_mechanisms, MECHANISMS),
    (decode_parameter_status, PARAMETER_STATUS),
    (decode_ready_for_query, b"I"),
    (decode_fields, ERROR_BODY),
    (decode_command_complete, COMMAND_COMPLETE),
    (decode_row_description, ROW_DESCRIPTION),
]
STRICT_IDS = [decoder.__name__ for decoder, _ in STRICT_DECODERS]


@pytest.mark.parametrize(("decode", "body"), STRICT_DECODERS, ids=STRICT_IDS)
def test_every_truncation_is_rejected(decode: Callable[[bytes], object], body: bytes) -> None:
    decode(body)
    for prefix in strictly_shorter(body):
        with pytest.raises(WireFormatError):
            decode(prefix)


@pytest.mark.parametrize(("decode", "body"), STRICT_DECODERS, ids=STRICT_IDS)
@pytest.mark.parametrize("extra", [b"\x00", b"x"])
def test_trailing_bytes_are_rejected(
    decode: Callable[[bytes], object], body: bytes, extra: bytes
) -> None:
    with pytest.raises(WireFormatError):
        decode(body + extra)


@pytest.mark.parametrize(
    ("decode", "body"),
    [
        *STRICT_DECODERS,
        (decode_authentication, struct.pack("!i", 5) + b"salt"),
        (decode_backend_key_data, struct.pack("!I", 7) + b"keyk"),
    ],
    ids=[*STRICT_IDS, "decode_authentication", "decode_backend_key_data"],
)
def test_memoryview_body_decodes_like_bytes(
    decode: Callable[[bytes | memoryview], object], body: bytes
) -> None:
    assert decode(memoryview(body)) == decode(body)


# Authentication.


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (struct.pack("!i", 0), Authentication(0, b"")),
        (struct.pack("!i", 3), Authentication(3, b"")),
        (struct.pack("!i", 5) + b"\x01\x02\x03\x04", Authentication(5, b"\x01\x02\x03\x04")),
        (struct.pack("!i", 10) + MECHANISMS, Authentication(10, MECHANISMS)),
        (struct.pack("!i", 11) + b"r=ab,s=c2Fs,i=4096", Authentication(11, b"r=ab,s=c2Fs,i=4096")),
        (struct.pack("!i", 12) + b"v=c2lnbmF0dXJl", Authentication(12, b"v=c2lnbmF0dXJl")),
    ],
)  # fmt: skip
def test_authentication(body: bytes, expected: Authentication) -> None:
    assert decode_authentication(body) == expected


@pytest.mark.parametrize("body", [b"", b"\x00", b"\x00\x00\x00"])
def test_authentication_without_a_code_is_rejected(body: bytes) -> None:
    with pytest.raises(WireFormatError, match="truncated"):
        decode_authentication(body)


def test_sasl_mechanisms() -> None:
    assert decode_sasl_mechanisms(MECHANISMS) == ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256")


def test_sasl_mechanism_list_may_be_empty() -> None:
    assert decode_sasl_mechanisms(b"\x00") == ()


@pytest.mark.parametrize("payload", [b"", b"SCRAM-SHA-256", b"SCRAM-SHA-256\x00"])
def test_sasl_mechanisms_without_the_final_terminator_are_rejected(payload: bytes) -> None:
    with pytest.raises(WireFormatError, match="NUL-terminated"):
        decode_sasl_mechanisms(payload)


def test_sasl_mechanism_after_the_terminator_is_rejected() -> None:
    with pytest.raises(WireFormatError, match="trailing"):
        decode_sasl_mechanisms(string("SCRAM-SHA-256") + b"\x00" + string("PLAIN"))


# BackendKeyData: a 4-byte key in protocol 3.0, up to 256 bytes from protocol 3.2.


@pytest.mark.parametrize("key_length", [4, 32, 256])
def test_backend_key_data(key_length: int) -> None:
    key = bytes((i * 13 + 5) % 256 for i in range(key_length))
    body = struct.pack("!I", 0xFFFFFFFE) + key
    assert decode_backend_key_data(body) == BackendKeyData(process_id=0xFFFFFFFE, secret_key=key)


@pytest.mark.parametrize("key_length", [0, 3, 257])
def test_backend_key_of_bad_length_is_rejected(key_length: int) -> None:
    with pytest.raises(WireFormatError, match="BackendKeyData"):
        decode_backend_key_data(struct.pack("!I", 1) + b"k" * key_length)


@pytest.mark.parametrize("body", [b"", b"\x00\x00\x00"])
def test_backend_key_data_without_a_process_id_is_rejected(body: bytes) -> None:
    with pytest.raises(WireFormatError):
        decode_backend_key_data(body)


# ParameterStatus, ReadyForQuery, CommandComplete.


def test_parameter_status() -> None:
    assert decode_parameter_status(PARAMETER_STATUS) == ("server_version", "17.2")


def test_parameter_status_with_empty_value() -> None:
    assert decode_parameter_status(string("application_name") + string("")) == (
        "application_name",
        "",
    )


def test_parameter_status_with_invalid_utf8_is_rejected() -> None:
    with pytest.raises(WireFormatError, match="UTF-8"):
        decode_parameter_status(string("client_encoding") + string(b"LATIN1\xe9"))


@pytest.mark.parametrize(
    ("body", "expected"), [(b"I", TX_IDLE), (b"T", TX_IN_BLOCK), (b"E", TX_FAILED)]
)
def test_ready_for_query(body: bytes, expected: int) -> None:
    assert decode_ready_for_query(body) == expected == body[0]


@pytest.mark.parametrize("body", [b"", b"II"])
def test_ready_for_query_of_bad_length_is_rejected(body: bytes) -> None:
    with pytest.raises(WireFormatError, match="ReadyForQuery"):
        decode_ready_for_query(body)


@pytest.mark.parametrize("tag", ["SELECT 3", "INSERT 0 5", "UPDATE 0", "BEGIN", "COPY 12"])
def test_command_complete(tag: str) -> None:
    assert decode_command_complete(string(tag)) == tag


# ErrorResponse / NoticeResponse fields.


def test_error_fields() -> None:
    assert decode_fields(ERROR_BODY) == dict(ERROR_FIELDS)


def test_no_fields() -> None:
    assert decode_fields(b"\x00") == {}


def test_unknown_field_codes_are_kept() -> None:
    assert decode_fields(fields(("M", "x"), ("q", "future field"))) == {
        "M": "x",
        "q": "future field",
    }


def test_field_value_with_invalid_utf8_is_rejected() -> None:
    with pytest.raises(WireFormatError, match="UTF-8"):
        decode_fields(b"M" + string(b"\xff") + b"\x00")


def test_fields_without_terminator_are_rejected() -> None:
    with pytest.raises(WireFormatError, match="truncated"):
        decode_fields(b"S" + string("ERROR"))


# RowDescription.


def test_row_description_with_several_columns() -> None:
    assert decode_row_description(ROW_DESCRIPTION) == COLUMNS


def test_row_description_without_columns() -> None:
    assert decode_row_description(struct.pack("!h", 0)) == ()


@pytest.mark.parametrize("count", [-1, -32768])
def test_row_description_negative_count_is_rejected(count: int) -> None:
    body = struct.pack("!h", count) + column("id", 0, 0, 23, 4, -1, 0)
    with pytest.raises(WireFormatError, match="negative column count"):
        decode_row_description(body)


def test_row_description_count_above_the_columns_present_is_rejected() -> None:
    body = struct.pack("!h", 2) + column("id", 0, 0, 23, 4, -1, 0)
    with pytest.raises(WireFormatError, match="not NUL-terminated"):
        decode_row_description(body)


def test_row_description_count_below_the_columns_present_is_rejected() -> None:
    body = struct.pack("!h", 1) + column("a", 0, 0, 23, 4, -1, 0) + column("b", 0, 0, 23, 4, -1, 0)
    with pytest.raises(WireFormatError, match="trailing"):
        decode_row_description(body)


def test_row_description_column_name_without_terminator_is_rejected() -> None:
    body = struct.pack("!h", 1) + b"id" + struct.pack("!IhIhih", 0, 0, 23, 4, -1, 0)
    with pytest.raises(WireFormatError):
        decode_row_description(body)


# Encoders: exact bytes, then back through the decoder.


def test_authentication_ok_and_cleartext() -> None:
    assert encode_authentication_ok() == b"R\x00\x00\x00\x08\x00\x00\x00\x00"
    assert encode_authentication_cleartext() == b"R\x00\x00\x00\x08\x00\x00\x00\x03"


@pytest.mark.parametrize(
    "mechanisms", [("SCRAM-SHA-256",), ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"), ()]
)
def test_authentication_sasl_mechanism_list(mechanisms: tuple[str, ...]) -> None:
    encoded = encode_authentication_sasl(mechanisms)
    payload = b"".join(string(m) for m in mechanisms) + b"\x00"
    assert encoded == message("R", struct.pack("!i", 10) + payload)
    auth = decode_authentication(split_message(encoded)[1])
    assert auth == Authentication(10, payload)
    assert decode_sasl_mechanisms(auth.payload) == mechanisms


def test_authentication_sasl_accepts_any_iterable() -> None:
    assert encode_authentication_sasl(iter(["SCRAM-SHA-256"])) == encode_authentication_sasl(
        ["SCRAM-SHA-256"]
    )


def test_authentication_sasl_refuses_nul_in_a_mechanism() -> None:
    with pytest.raises(WireFormatError, match="NUL"):
        encode_authentication_sasl(["SCRAM\x00"])


@pytest.mark.parametrize(
    ("encode", "code"),
    [(encode_authentication_sasl_continue, 11), (encode_authentication_sasl_final, 12)],
)
def test_authentication_sasl_continue_and_final(
    encode: Callable[[bytes], bytes], code: int
) -> None:
    data = b"r=abc,s=c2FsdA==,i=4096"
    encoded = encode(data)
    assert encoded == message("R", struct.pack("!i", code) + data)
    assert decode_authentication(split_message(encoded)[1]) == Authentication(code, data)


def test_parameter_status_encoder() -> None:
    encoded = encode_parameter_status("TimeZone", "Europe/Zürich")
    assert encoded == message("S", string("TimeZone") + string("Europe/Zürich"))
    assert decode_parameter_status(split_message(encoded)[1]) == ("TimeZone", "Europe/Zürich")


@pytest.mark.parametrize("key", [b"\x00\x00\x00\x01", bytes(range(32))])
def test_backend_key_data_encoder(key: bytes) -> None:
    encoded = encode_backend_key_data(4242, key)
    assert encoded == message("K", struct.pack("!I", 4242) + key)
    assert decode_backend_key_data(split_message(encoded)[1]) == BackendKeyData(4242, key)


@pytest.mark.parametrize("status", [TX_IDLE, TX_IN_BLOCK, TX_FAILED])
def test_ready_for_query_encoder(status: int) -> None:
    encoded = encode_ready_for_query(status)
    assert encoded == b"Z\x00\x00\x00\x05" + bytes((status,))
    assert decode_ready_for_query(split_message(encoded)[1]) == status


def test_negotiate_protocol_version() -> None:
    encoded = encode_negotiate_protocol_version(2, ["_pq_.compression", "_pq_.other"])
    assert encoded == message(
        "v", struct.pack("!ii", 2, 2) + string("_pq_.compression") + string("_pq_.other")
    )


def test_negotiate_protocol_version_without_options() -> None:
    assert encode_negotiate_protocol_version(0, []) == message("v", struct.pack("!ii", 0, 0))


def test_negotiate_protocol_version_accepts_any_iterable() -> None:
    names = (n for n in ["_pq_.a"])
    assert encode_negotiate_protocol_version(2, names) == message(
        "v", struct.pack("!ii", 2, 1) + string("_pq_.a")
    )


def test_negotiate_protocol_version_refuses_nul_in_an_option() -> None:
    with pytest.raises(WireFormatError, match="NUL"):
        encode_negotiate_protocol_version(0, ["_pq_.a\x00b"])


def test_error_encoder() -> None:
    encoded = encode_error(
        "42501",
        "permission denied for table salaries",
        detail="rule deny-hr-tables matched",
        hint="request access in the portal",
    )
    expected_fields = (
        ("S", "ERROR"),
        ("V", "ERROR"),
        ("C", "42501"),
        ("M", "permission denied for table salaries"),
        ("D", "rule deny-hr-tables matched"),
        ("H", "request access in the portal"),
    )
    assert encoded == message("E", fields(*expected_fields))
    assert decode_fields(split_message(encoded)[1]) == dict(expected_fields)


def test_error_encoder_with_only_the_required_fields() -> None:
    kind, body = split_message(
        encode_error("28P01", "password authentication failed", severity="FATAL")
    )
    assert kind == "E"
    assert decode_fields(body) == {
        "S": "FATAL",
        "V": "FATAL",
        "C": "28P01",
        "M": "password authentication failed",
    }


def test_error_encoder_drops_nul_from_text() -> None:
    # Text reaching an error can come from a client; a NUL must not end the field early.
    _, body = split_message(encode_error("22021", "bad\x00 byte", detail="x\x00y"))
    assert decode_fields(body)["M"] == "bad byte"
    assert decode_fields(body)["D"] == "xy"


def test_notice_encoder() -> None:
    kind, body = split_message(encode_notice("query was rewritten", hint="masked columns"))
    assert kind == "N"
    assert decode_fields(body) == {
        "S": "NOTICE",
        "V": "NOTICE",
        "C": "00000",
        "M": "query was rewritten",
        "H": "masked columns",
    }


def test_fields_encoder() -> None:
    assert encode_fields({"M": "hi", "q": ""}) == b"Mhi\x00q\x00\x00"
    assert encode_fields({}) == b"\x00"


@pytest.mark.parametrize("code", ["", "SV", "é", "\x00", "\u20ac"])
def test_fields_encoder_refuses_codes_that_are_not_one_ascii_byte(code: str) -> None:
    with pytest.raises(WireFormatError, match="single"):
        encode_fields({code: "value"})


@pytest.mark.parametrize("status", [b"X", b"\x00", b"i"])
def test_ready_for_query_with_an_unknown_status_is_rejected(status: bytes) -> None:
    with pytest.raises(WireFormatError):
        decode_ready_for_query(status)

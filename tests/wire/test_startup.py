"""Untyped startup packets: bytes built by hand in, `StartupPacket` values out, and back."""

from __future__ import annotations

import struct

import pytest

from bastion.wire.postgres.codes import (
    CANCEL_REQUEST_CODE,
    GSSENC_REQUEST_CODE,
    PROTOCOL_3_0,
    SSL_REQUEST_CODE,
)
from bastion.wire.postgres.errors import WireFormatError
from bastion.wire.postgres.startup import (
    MAX_CANCEL_KEY_BYTES,
    MAX_STARTUP_PARAMETERS,
    MIN_STARTUP_LENGTH,
    CancelRequest,
    GSSENCRequest,
    SSLRequest,
    StartupMessage,
    encode_cancel_request,
    encode_gssenc_request,
    encode_ssl_request,
    encode_startup_message,
    parse_startup_packet,
    startup_length,
)

from .handmade import startup_packet, string

MAX_LENGTH = 10_000


def version(major: int, minor: int) -> bytes:
    return struct.pack("!HH", major, minor)


def parameters(*strings: str | bytes) -> bytes:
    """The parameter list of a StartupMessage: strings, then the terminating NUL."""
    return b"".join(string(s) for s in strings) + b"\x00"


def read_packet(packet: bytes) -> object:
    """What a server does: validate the length prefix, then parse exactly that many bytes."""
    body_length = startup_length(packet[:4], MAX_LENGTH)
    assert body_length == len(packet) - 4
    return parse_startup_packet(packet[4:])


# Protocol constants, against the values in the PostgreSQL documentation.


def test_request_codes_are_the_documented_values() -> None:
    assert (1234 << 16) | 5678 == CANCEL_REQUEST_CODE == 80877102
    assert (1234 << 16) | 5679 == SSL_REQUEST_CODE == 80877103
    assert (1234 << 16) | 5680 == GSSENC_REQUEST_CODE == 80877104
    assert PROTOCOL_3_0 == 3 << 16


# SSLRequest and GSSENCRequest.


def test_ssl_request() -> None:
    packet = struct.pack("!II", 8, 80877103)
    assert read_packet(packet) == SSLRequest()


def test_gssenc_request() -> None:
    packet = struct.pack("!II", 8, 80877104)
    assert read_packet(packet) == GSSENCRequest()


@pytest.mark.parametrize("code", [SSL_REQUEST_CODE, GSSENC_REQUEST_CODE])
@pytest.mark.parametrize("extra", [b"\x00", b"\x00\x00\x00\x00"])
def test_encryption_request_with_a_body_is_rejected(code: int, extra: bytes) -> None:
    with pytest.raises(WireFormatError, match="malformed"):
        parse_startup_packet(struct.pack("!I", code) + extra)


def test_encryption_request_encoders_match_the_documented_bytes() -> None:
    assert encode_ssl_request() == b"\x00\x00\x00\x08\x04\xd2\x16\x2f"
    assert encode_gssenc_request() == b"\x00\x00\x00\x08\x04\xd2\x16\x30"
    assert read_packet(encode_ssl_request()) == SSLRequest()
    assert read_packet(encode_gssenc_request()) == GSSENCRequest()


# CancelRequest: 4-byte keys in protocol 3.0, up to 256 bytes from protocol 3.2.


@pytest.mark.parametrize("key_length", [4, 5, 32, MAX_CANCEL_KEY_BYTES])
def test_cancel_request(key_length: int) -> None:
    key = bytes((i * 7 + 1) % 256 for i in range(key_length))
    packet = startup_packet(struct.pack("!II", 80877102, 4242) + key)
    assert read_packet(packet) == CancelRequest(process_id=4242, secret_key=key)


def test_cancel_request_process_id_is_unsigned() -> None:
    packet = startup_packet(struct.pack("!II", 80877102, 0xFFFFFFFF) + b"\x01\x02\x03\x04")
    result = read_packet(packet)
    assert isinstance(result, CancelRequest)
    assert result.process_id == 0xFFFFFFFF


@pytest.mark.parametrize("key_length", [0, 1, 3])
def test_cancel_request_with_a_short_key_is_rejected(key_length: int) -> None:
    body = struct.pack("!II", CANCEL_REQUEST_CODE, 1) + b"k" * key_length
    with pytest.raises(WireFormatError, match="CancelRequest"):
        parse_startup_packet(body)


def test_cancel_request_without_a_process_id_is_rejected() -> None:
    with pytest.raises(WireFormatError, match="CancelRequest"):
        parse_startup_packet(struct.pack("!I", CANCEL_REQUEST_CODE) + b"\x00\x00")


@pytest.mark.parametrize("key_length", [MAX_CANCEL_KEY_BYTES + 1, 4096])
def test_cancel_request_with_a_long_key_is_rejected(key_length: int) -> None:
    body = struct.pack("!II", CANCEL_REQUEST_CODE, 1) + b"k" * key_length
    with pytest.raises(WireFormatError, match="CancelRequest"):
        parse_startup_packet(body)


@pytest.mark.parametrize("key", [b"\x00\x01\x02\x03", bytes(range(256))])
def test_cancel_request_encoder_round_trips(key: bytes) -> None:
    packet = encode_cancel_request(77, key)
    assert packet == startup_packet(struct.pack("!II", 80877102, 77) + key)
    assert read_packet(packet) == CancelRequest(process_id=77, secret_key=key)


# StartupMessage.


def test_startup_message_with_the_usual_parameters() -> None:
    body = version(3, 0) + parameters(
        "user", "alice",
        "database", "sales",
        "options", "-c search_path=reporting -c statement_timeout=5s",
        "application_name", "psql",
    )  # fmt: skip
    assert read_packet(startup_packet(body)) == StartupMessage(
        major=3,
        minor=0,
        parameters={
            "user": "alice",
            "database": "sales",
            "options": "-c search_path=reporting -c statement_timeout=5s",
            "application_name": "psql",
        },
    )


def test_startup_message_keeps_parameter_order() -> None:
    body = version(3, 0) + parameters("b", "1", "a", "2", "c", "3")
    result = parse_startup_packet(body)
    assert isinstance(result, StartupMessage)
    assert list(result.parameters) == ["b", "a", "c"]


def test_startup_message_accepts_empty_values_and_utf8() -> None:
    body = version(3, 0) + parameters("user", "jürgen", "application_name", "")
    assert parse_startup_packet(body) == StartupMessage(
        3, 0, {"user": "jürgen", "application_name": ""}
    )


def test_startup_message_with_no_parameters() -> None:
    packet = startup_packet(version(3, 0) + b"\x00")
    assert read_packet(packet) == StartupMessage(major=3, minor=0, parameters={})


@pytest.mark.parametrize("minor", [0, 1, 2, 0xFFFF])
def test_minor_version_is_preserved(minor: int) -> None:
    result = parse_startup_packet(version(3, minor) + b"\x00")
    assert result == StartupMessage(major=3, minor=minor, parameters={})


def test_protocol_3_2_with_parameters() -> None:
    body = version(3, 2) + parameters("user", "alice", "_pq_.test_option", "on")
    assert parse_startup_packet(body) == StartupMessage(
        3, 2, {"user": "alice", "_pq_.test_option": "on"}
    )


@pytest.mark.parametrize(("major", "minor"), [(2, 0), (4, 0), (1, 0), (0, 0), (1234, 5681)])
def test_other_protocol_versions_are_rejected(major: int, minor: int) -> None:
    body = version(major, minor) + parameters("user", "alice")
    with pytest.raises(WireFormatError, match="unsupported frontend protocol"):
        parse_startup_packet(body)


def test_missing_final_terminator_is_rejected() -> None:
    body = version(3, 0) + string("user") + string("alice")
    with pytest.raises(WireFormatError):
        parse_startup_packet(body)


@pytest.mark.parametrize("tail", [b"", b"user", b"user\x00alice"])
def test_unterminated_string_is_rejected(tail: bytes) -> None:
    with pytest.raises(WireFormatError):
        parse_startup_packet(version(3, 0) + tail)


def test_name_without_a_value_is_rejected() -> None:
    # Three strings then the terminator: "database" has no value of its own.
    body = version(3, 0) + parameters("user", "alice", "database")
    with pytest.raises(WireFormatError):
        parse_startup_packet(body)


def test_duplicate_parameter_names_are_rejected() -> None:
    body = version(3, 0) + parameters("user", "alice", "user", "postgres")
    with pytest.raises(WireFormatError, match="duplicate"):
        parse_startup_packet(body)


def test_empty_parameter_name_is_rejected() -> None:
    body = version(3, 0) + b"\x00value\x00\x00"
    with pytest.raises(WireFormatError):
        parse_startup_packet(body)


@pytest.mark.parametrize(
    "strings", [(b"user", b"\xff\xfe"), (b"us\xc3er", b"alice"), (b"user", b"\xed\xa0\x80")]
)
def test_non_utf8_parameters_are_rejected(strings: tuple[bytes, bytes]) -> None:
    body = version(3, 0) + parameters(*strings)
    with pytest.raises(WireFormatError, match="UTF-8"):
        parse_startup_packet(body)


def many_parameters(count: int) -> bytes:
    return version(3, 0) + parameters(*(s for i in range(count) for s in (f"p{i}", str(i))))


def test_the_maximum_number_of_parameters_is_accepted() -> None:
    result = parse_startup_packet(many_parameters(MAX_STARTUP_PARAMETERS))
    assert isinstance(result, StartupMessage)
    assert len(result.parameters) == MAX_STARTUP_PARAMETERS == 64


def test_more_than_the_maximum_number_of_parameters_is_rejected() -> None:
    with pytest.raises(WireFormatError, match="64 startup parameters"):
        parse_startup_packet(many_parameters(MAX_STARTUP_PARAMETERS + 1))


@pytest.mark.parametrize("body", [b"", b"\x00", b"\x00\x03\x00"])
def test_packet_shorter_than_a_request_code_is_rejected(body: bytes) -> None:
    with pytest.raises(WireFormatError, match="too short"):
        parse_startup_packet(body)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"user": "alice"},
        {"user": "alice", "database": "sales", "options": "-c x=y", "application_name": "é"},
    ],
)
@pytest.mark.parametrize("minor", [0, 2])
def test_startup_encoder_round_trips(params: dict[str, str], minor: int) -> None:
    packet = encode_startup_message(params, minor=minor)
    flat = [s for pair in params.items() for s in pair]
    assert packet == startup_packet(version(3, minor) + parameters(*flat))
    assert read_packet(packet) == StartupMessage(major=3, minor=minor, parameters=params)


@pytest.mark.parametrize(
    "params", [{"user": "alice\x00options\x00-c role=admin"}, {"us\x00er": "alice"}]
)
def test_startup_encoder_refuses_nul_in_names_and_values(params: dict[str, str]) -> None:
    # A NUL would end the string early and smuggle extra parameters to the server.
    with pytest.raises(WireFormatError):
        encode_startup_message(params)


# startup_length: the 4-byte prefix that says how much to read.


@pytest.mark.parametrize("length", [0, 1, 4, MIN_STARTUP_LENGTH - 1])
def test_length_below_the_minimum_is_rejected(length: int) -> None:
    with pytest.raises(WireFormatError, match="invalid startup packet length"):
        startup_length(struct.pack("!I", length), MAX_LENGTH)


def test_minimum_length() -> None:
    assert MIN_STARTUP_LENGTH == 8
    assert startup_length(struct.pack("!I", 8), MAX_LENGTH) == 4


def test_maximum_length_is_inclusive() -> None:
    assert startup_length(struct.pack("!I", MAX_LENGTH), MAX_LENGTH) == MAX_LENGTH - 4


@pytest.mark.parametrize("length", [MAX_LENGTH + 1, 0x7FFFFFFF, 0xFFFFFFFF])
def test_length_above_the_maximum_is_rejected(length: int) -> None:
    with pytest.raises(WireFormatError, match="exceeds"):
        startup_length(struct.pack("!I", length), MAX_LENGTH)


@pytest.mark.parametrize("header", [b"", b"\x00\x00\x00", b"\x00\x00\x00\x08\x00"])
def test_header_must_be_four_bytes(header: bytes) -> None:
    with pytest.raises(WireFormatError, match="4 bytes"):
        startup_length(header, MAX_LENGTH)

"""PROXY protocol v1 and v2 headers: bytes in, addresses out; garbage refused."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.wire import proxy_protocol as pp
from bastion.wire.postgres.errors import WireFormatError


def test_v1_tcp4_and_tcp6() -> None:
    assert pp.parse_v1(b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 6432\r\n") == pp.ProxyHeader(
        "203.0.113.7", 40000, "10.0.0.1", 6432
    )
    header = pp.parse_v1(b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n")
    assert (header.source_ip, header.source_port) == ("2001:db8::1", 1)


def test_v1_unknown_keeps_the_peer() -> None:
    assert pp.parse_v1(b"PROXY UNKNOWN\r\n") == pp.UNKNOWN
    assert pp.parse_v1(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n") == pp.UNKNOWN


@pytest.mark.parametrize(
    "line",
    [
        b"PROXY TCP4 203.0.113.7 10.0.0.1 40000\r\n",
        b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 6432\n",
        b"PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n",
        b"PROXY TCP4 203.0.113.7 10.0.0.1 70000 1\r\n",
        b"PROXY TCP4 203.0.113.7 10.0.0.1 -1 1\r\n",
        b"PROXY TCP4 203.0.113.7 10.0.0.1 01 1\r\n",
        b"PROXY UDP4 203.0.113.7 10.0.0.1 1 1\r\n",
        b"PROXY TCP4 host.example 10.0.0.1 1 1\r\n",
        b"PROXY TCP4 \xff 10.0.0.1 1 1\r\n",
        b"PROXY " + b"1" * 120 + b"\r\n",
    ],
)
def test_v1_malformed(line: bytes) -> None:
    with pytest.raises(WireFormatError):
        pp.parse_v1(line)


def test_v2_round_trips() -> None:
    for source, dest in (("203.0.113.7", "10.0.0.1"), ("2001:db8::7", "2001:db8::1")):
        data = pp.encode_v2(source, 50000, dest, 6432)
        fixed, payload = data[:16], data[16:]
        assert pp.v2_payload_length(fixed) == len(payload)
        assert pp.parse_v2(fixed, payload) == pp.ProxyHeader(source, 50000, dest, 6432)


def test_v2_by_hand_with_tlvs_and_local() -> None:
    payload = bytes([198, 51, 100, 9, 10, 0, 0, 1]) + struct.pack("!HH", 1234, 6432)
    payload += b"\x01\x00\x02h2"  # an ALPN TLV, ignored
    fixed = pp.V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", len(payload))
    assert pp.parse_v2(fixed, payload).source_ip == "198.51.100.9"
    local = pp.V2_SIGNATURE + b"\x20\x00" + struct.pack("!H", 0)
    assert pp.parse_v2(local, b"") == pp.UNKNOWN


@pytest.mark.parametrize(
    "fixed",
    [
        b"\r\n\r\n\x00\r\nQUIT\x0b" + b"\x21\x11\x00\x0c",  # bad signature
        pp.V2_SIGNATURE + b"\x11\x11\x00\x0c",  # version 1 in a v2 header
        pp.V2_SIGNATURE + b"\x22\x11\x00\x0c",  # unknown command
        pp.V2_SIGNATURE + b"\x21\x11\xff\xff",  # far too long
    ],
)
def test_v2_malformed_fixed_part(fixed: bytes) -> None:
    with pytest.raises(WireFormatError):
        pp.v2_payload_length(fixed)


def test_v2_truncated_addresses() -> None:
    fixed = pp.V2_SIGNATURE + b"\x21\x11" + struct.pack("!H", 4)
    with pytest.raises(WireFormatError):
        pp.parse_v2(fixed, b"\x01\x02\x03\x04")


@given(st.binary(max_size=200))
def test_v1_parser_only_raises_wire_format_errors(data: bytes) -> None:
    with contextlib.suppress(WireFormatError):
        pp.parse_v1(b"PROXY " + data)


@given(st.binary(min_size=4, max_size=4), st.binary(max_size=64))
def test_v2_parser_only_raises_wire_format_errors(tail: bytes, payload: bytes) -> None:
    with contextlib.suppress(WireFormatError):
        pp.parse_v2(pp.V2_SIGNATURE + tail, payload)

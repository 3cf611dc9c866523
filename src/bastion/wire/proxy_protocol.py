"""The PROXY protocol (versions 1 and 2) header a load balancer puts before a connection's
first byte to say where the client really connected from.

Only parsing lives here. Whether a header is expected, and from which peers it is believed,
is the listener's decision: a header from an untrusted peer must never be believed.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from bastion.wire.postgres.errors import WireFormatError

V1_PREFIX = b"PROXY "
V1_MAX_LENGTH = 107  # including the CRLF, per the specification
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED_LENGTH = 16  # signature, version/command, family/protocol, length
V2_MAX_PAYLOAD = 2048

_V2_LOCAL, _V2_PROXY = 0x0, 0x1
_V2_TCP4, _V2_TCP6 = 0x11, 0x21


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """The original client and destination. None addresses: the proxy sent LOCAL or UNKNOWN
    (a health check, or a protocol it does not describe); the TCP peer then stands."""

    source_ip: str | None
    source_port: int | None
    dest_ip: str | None = None
    dest_port: int | None = None


UNKNOWN = ProxyHeader(None, None)


def parse_v1(line: bytes) -> ProxyHeader:
    """Parse a whole version 1 line, `PROXY TCP4 src dst sport dport\\r\\n`."""
    if len(line) > V1_MAX_LENGTH or not line.startswith(V1_PREFIX) or not line.endswith(b"\r\n"):
        raise WireFormatError("malformed PROXY protocol v1 header")
    try:
        words = line[:-2].decode("ascii").split(" ")
    except UnicodeDecodeError:
        raise WireFormatError("malformed PROXY protocol v1 header") from None
    if len(words) >= 2 and words[1] == "UNKNOWN":
        return UNKNOWN
    if len(words) != 6 or words[1] not in ("TCP4", "TCP6"):
        raise WireFormatError("malformed PROXY protocol v1 header")
    version = 4 if words[1] == "TCP4" else 6
    source, dest = _address(words[2], version), _address(words[3], version)
    return ProxyHeader(source, _port(words[4]), dest, _port(words[5]))


def v2_payload_length(fixed: bytes) -> int:
    """Check the 16 fixed bytes of a version 2 header; return the length of what follows."""
    if len(fixed) != V2_FIXED_LENGTH or not fixed.startswith(V2_SIGNATURE):
        raise WireFormatError("malformed PROXY protocol v2 header")
    version, command = fixed[12] >> 4, fixed[12] & 0x0F
    if version != 2 or command not in (_V2_LOCAL, _V2_PROXY):
        raise WireFormatError("unsupported PROXY protocol v2 version or command")
    (length,) = struct.unpack_from("!H", fixed, 14)
    if length > V2_MAX_PAYLOAD:
        raise WireFormatError("PROXY protocol v2 header too long")
    return int(length)


def parse_v2(fixed: bytes, payload: bytes) -> ProxyHeader:
    """Parse a version 2 header from its fixed part and its payload (addresses and TLVs)."""
    if len(payload) != v2_payload_length(fixed):
        raise WireFormatError("truncated PROXY protocol v2 header")
    if fixed[12] & 0x0F == _V2_LOCAL:
        return UNKNOWN
    family = fixed[13]
    if family == _V2_TCP4:
        if len(payload) < 12:
            raise WireFormatError("truncated PROXY protocol v2 addresses")
        src, dst, sport, dport = struct.unpack_from("!4s4sHH", payload)
    elif family == _V2_TCP6:
        if len(payload) < 36:
            raise WireFormatError("truncated PROXY protocol v2 addresses")
        src, dst, sport, dport = struct.unpack_from("!16s16sHH", payload)
    else:
        return UNKNOWN  # UDP or unix sockets: nothing Bastion can use
    return ProxyHeader(str(ipaddress.ip_address(src)), sport, str(ipaddress.ip_address(dst)), dport)


def encode_v1(source: str, source_port: int, dest: str, dest_port: int) -> bytes:
    family = "TCP4" if ipaddress.ip_address(source).version == 4 else "TCP6"
    return f"PROXY {family} {source} {dest} {source_port} {dest_port}\r\n".encode()


def encode_v2(source: str, source_port: int, dest: str, dest_port: int) -> bytes:
    src, dst = ipaddress.ip_address(source), ipaddress.ip_address(dest)
    if src.version == 4:
        payload = struct.pack("!4s4sHH", src.packed, dst.packed, source_port, dest_port)
        family = _V2_TCP4
    else:
        payload = struct.pack("!16s16sHH", src.packed, dst.packed, source_port, dest_port)
        family = _V2_TCP6
    return V2_SIGNATURE + bytes((0x21, family)) + struct.pack("!H", len(payload)) + payload


def _address(text: str, version: int) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise WireFormatError("invalid address in PROXY protocol header") from None
    if address.version != version:
        raise WireFormatError("address family mismatch in PROXY protocol header")
    return str(address)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535 or (len(text) > 1 and text[0] == "0"):
        raise WireFormatError("invalid port in PROXY protocol header")
    return int(text)

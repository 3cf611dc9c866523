"""Reading and writing the PostgreSQL value formats masking rewrites, text and binary.

This module owns the byte layouts: big-endian integers, the binary numeric (base-10000 digits
with weight, sign and display scale), dates and timestamps as days and microseconds since
2000-01-01, inet/cidr (family, bits, is_cidr, length, address), empty arrays, bytea's text
forms. Only what strategies need; nothing here decides what to mask.
"""

from __future__ import annotations

import datetime
import struct
from typing import Final

DATE_EPOCH: Final = datetime.date(2000, 1, 1)
TIMESTAMP_EPOCH: Final = datetime.datetime(2000, 1, 1)
UTC_EPOCH: Final = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
MICROS_PER_DAY: Final = 86_400_000_000
DATE_INFINITY: Final = (2**31 - 1, -(2**31))
TIMESTAMP_INFINITY: Final = (2**63 - 1, -(2**63))

NUMERIC_POSITIVE: Final = 0x0000
NUMERIC_NEGATIVE: Final = 0x4000
NUMERIC_NAN: Final = 0xC000
NUMERIC_PINF: Final = 0xD000
NUMERIC_NINF: Final = 0xF000

INET_FAMILY_V4: Final = 2  # PGSQL_AF_INET
INET_FAMILY_V6: Final = 3  # PGSQL_AF_INET6

_NUMERIC_HEADER = struct.Struct(">hhHH")


def int_from_binary(value: bytes, size: int) -> int:
    """A big-endian signed integer of exactly `size` bytes (ValueError otherwise)."""
    if len(value) != size:
        raise ValueError(f"expected {size} bytes, got {len(value)}")
    return int.from_bytes(value, "big", signed=True)


def int_to_binary(number: int, size: int) -> bytes:
    return number.to_bytes(size, "big", signed=True)


def numeric_typmod(type_modifier: int) -> tuple[int, int] | None:
    """(precision, scale) of numeric(p, s); None for unconstrained numeric."""
    if type_modifier < 4:
        return None
    packed = type_modifier - 4
    scale = packed & 0x7FF
    if scale & 0x400:  # PostgreSQL 15+ allows a negative scale, stored in 11 bits
        scale -= 0x800
    return (packed >> 16) & 0xFFFF, scale


def numeric_to_binary(integer: int, scale: int) -> bytes:
    """The binary numeric of an integer value displayed with `scale` decimal places."""
    sign = NUMERIC_NEGATIVE if integer < 0 else NUMERIC_POSITIVE
    remaining = abs(integer)
    digits: list[int] = []
    while remaining:
        remaining, digit = divmod(remaining, 10_000)
        digits.append(digit)
    digits.reverse()
    weight = len(digits) - 1 if digits else 0
    while digits and digits[-1] == 0:
        digits.pop()
    header = _NUMERIC_HEADER.pack(len(digits), weight, sign, max(scale, 0))
    return header + struct.pack(f">{len(digits)}H", *digits)


def numeric_text_from_binary(value: bytes) -> str:
    """The text PostgreSQL prints for a binary numeric (used as the canonical form)."""
    ndigits, weight, sign, dscale = _NUMERIC_HEADER.unpack_from(value)
    if sign == NUMERIC_NAN:
        return "NaN"
    if sign == NUMERIC_PINF:
        return "Infinity"
    if sign == NUMERIC_NINF:
        return "-Infinity"
    digits = struct.unpack_from(f">{ndigits}H", value, 8)
    integer_groups = [digits[i] if 0 <= i < ndigits else 0 for i in range(weight + 1)]
    integer = "".join(f"{group:04d}" for group in integer_groups).lstrip("0") or "0"
    fraction = "".join(
        f"{digits[i]:04d}" if 0 <= i < ndigits else "0000"
        for i in range(weight + 1, weight + 1 + (dscale + 3) // 4)
    )[:dscale]
    text = integer + ("." + fraction if dscale else "")
    return ("-" if sign == NUMERIC_NEGATIVE else "") + text


def date_from_days(days: int) -> datetime.date:
    return DATE_EPOCH + datetime.timedelta(days=days)


def days_from_date(date: datetime.date) -> int:
    return (date - DATE_EPOCH).days


def micros_from_datetime(moment: datetime.datetime) -> int:
    epoch = UTC_EPOCH if moment.tzinfo is not None else TIMESTAMP_EPOCH
    delta = moment - epoch
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def datetime_from_micros(micros: int) -> datetime.datetime:
    return TIMESTAMP_EPOCH + datetime.timedelta(microseconds=micros)


def inet_to_binary(family: int, bits: int, is_cidr: bool, address: bytes) -> bytes:
    return bytes((family, bits, int(is_cidr), len(address))) + address


def inet_from_binary(value: bytes) -> tuple[int, int, bytes]:
    """(family, bits, address bytes); ValueError for anything but a well-formed value."""
    if len(value) not in (8, 20) or value[3] != len(value) - 4:
        raise ValueError("malformed binary inet")
    return value[0], value[1], value[4:]


def empty_array_binary(element_oid: int) -> bytes:
    """A zero-dimensional array: no dimensions, no null bitmap, the element type."""
    return struct.pack(">iiI", 0, 0, element_oid)


def bytea_from_text(value: bytes) -> bytes:
    """Decode bytea's text output, hex (`\\x...`) or escape format."""
    if value.startswith(b"\\x"):
        return bytes.fromhex(value[2:].decode("ascii"))
    out = bytearray()
    position = 0
    while position < len(value):
        char = value[position]
        if char == 0x5C and value[position + 1 : position + 2] == b"\\":
            out.append(0x5C)
            position += 2
        elif char == 0x5C:
            out.append(int(value[position + 1 : position + 4], 8))
            position += 4
        else:
            out.append(char)
            position += 1
    return bytes(out)

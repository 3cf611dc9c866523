"""Sample values of every type the strategies handle, in text and binary format.

Binary forms come from psycopg's own dumpers (not from Bastion's codecs), so a layout mistake
in Bastion cannot hide behind a matching mistake in the test.
"""

from __future__ import annotations

import datetime
import ipaddress
import struct
import uuid
from dataclasses import dataclass
from decimal import Decimal

import psycopg
from psycopg.adapt import PyFormat
from psycopg.types.json import Json, Jsonb

from bastion.masking import pgtypes
from bastion.masking.classes import SensitiveClass as C


@dataclass(frozen=True)
class TypeCase:
    """One value of one column type, and the class a column of that type would be labelled."""

    sql_type: str  # as written in a cast: varchar(12), numeric(10,2) ...
    type_oid: int
    type_modifier: int
    text: bytes
    python: object  # the same value, for psycopg's binary dumper
    sensitive_class: C
    binary_form: bytes | None = None  # for types psycopg has no binary dumper for

    @property
    def id(self) -> str:
        return f"{self.sql_type}:{self.text[:24]!r}"

    def binary(self) -> bytes:
        if self.binary_form is not None:
            return self.binary_form
        if self.type_oid in pgtypes.STRING_TYPES:
            return self.text  # the binary form of a string type is the string itself
        if self.type_oid in pgtypes.INTEGER_TYPES:
            size = {pgtypes.INT2: 2, pgtypes.INT4: 4, pgtypes.INT8: 8}[self.type_oid]
            return int(self.text).to_bytes(size, "big", signed=True)
        dumper = psycopg.adapters.get_dumper(type(self.python), PyFormat.BINARY)(
            type(self.python)
        ).upgrade(self.python, PyFormat.BINARY)
        dumped = dumper.dump(self.python)
        assert dumped is not None
        return bytes(dumped)


def _typmod_varchar(n: int) -> int:
    return n + 4


def _typmod_numeric(precision: int, scale: int) -> int:
    return ((precision << 16) | scale) + 4


CASES: list[TypeCase] = [
    TypeCase(
        "text", pgtypes.TEXT, -1, b"ava.garcia1@example.com", "ava.garcia1@example.com", C.EMAIL
    ),
    TypeCase("text", pgtypes.TEXT, -1, b"+1 (212) 555-0187", "+1 (212) 555-0187", C.PHONE),
    TypeCase("text", pgtypes.TEXT, -1, b"4111111111111111", "4111111111111111", C.CARD_NUMBER),
    TypeCase("text", pgtypes.TEXT, -1, "Chloé O'Brien".encode(), "Chloé O'Brien", C.PERSON_NAME),
    TypeCase("text", pgtypes.TEXT, -1, b"203.0.113.7", "203.0.113.7", C.IP_ADDRESS),
    TypeCase("text", pgtypes.TEXT, -1, b"1985-03-14", "1985-03-14", C.BIRTH_DATE),
    TypeCase("text", pgtypes.TEXT, -1, b"hunter2", "hunter2", C.PASSWORD),
    TypeCase("varchar(12)", pgtypes.VARCHAR, _typmod_varchar(12), b"ab@ex.io", "ab@ex.io", C.EMAIL),
    TypeCase("varchar(3)", pgtypes.VARCHAR, _typmod_varchar(3), b"a@b", "a@b", C.TOKEN),
    TypeCase("char(11)", pgtypes.BPCHAR, _typmod_varchar(11), b"123-45-6789", "123-45-6789", C.SSN),
    TypeCase(
        "char(20)",
        pgtypes.BPCHAR,
        _typmod_varchar(20),
        b"ab@example.com      ",
        "ab@example.com",
        C.EMAIL,
    ),
    TypeCase("char(2)", pgtypes.BPCHAR, _typmod_varchar(2), b"xy", "xy", C.SECRET),
    TypeCase("name", pgtypes.NAME, -1, b"secret_role", "secret_role", C.SECRET),
    TypeCase("int2", pgtypes.INT2, -1, b"1234", 1234, C.CARD_SECURITY_CODE),
    TypeCase("int4", pgtypes.INT4, -1, b"-123456789", -123456789, C.SSN),
    TypeCase("int8", pgtypes.INT8, -1, b"4111111111111111", 4111111111111111, C.CARD_NUMBER),
    TypeCase("int8", pgtypes.INT8, -1, b"-9223372036854775808", -(2**63), C.BANK_ACCOUNT),
    TypeCase(
        "numeric",
        pgtypes.NUMERIC,
        -1,
        b"4111111111111111",
        Decimal("4111111111111111"),
        C.CARD_NUMBER,
    ),
    TypeCase(
        "numeric(10,2)",
        pgtypes.NUMERIC,
        _typmod_numeric(10, 2),
        b"12345.67",
        Decimal("12345.67"),
        C.BANK_ACCOUNT,
    ),
    TypeCase(
        "numeric(4,4)",
        pgtypes.NUMERIC,
        _typmod_numeric(4, 4),
        b"0.1234",
        Decimal("0.1234"),
        C.SECRET,
    ),
    TypeCase("numeric", pgtypes.NUMERIC, -1, b"-0.000120", Decimal("-0.000120"), C.SECRET),
    TypeCase("float8", pgtypes.FLOAT8, -1, b"1234.5", 1234.5, C.SECRET),
    TypeCase(
        "uuid",
        pgtypes.UUID,
        -1,
        b"550e8400-e29b-41d4-a716-446655440000",
        uuid.UUID("550e8400-e29b-41d4-a716-446655440000"),
        C.TOKEN,
    ),
    TypeCase("date", pgtypes.DATE, -1, b"1985-03-14", datetime.date(1985, 3, 14), C.BIRTH_DATE),
    TypeCase("date", pgtypes.DATE, -1, b"0044-03-15", datetime.date(44, 3, 15), C.BIRTH_DATE),
    TypeCase(
        "timestamp",
        pgtypes.TIMESTAMP,
        -1,
        b"1985-03-14 10:20:30.123456",
        datetime.datetime(1985, 3, 14, 10, 20, 30, 123456),
        C.BIRTH_DATE,
    ),
    TypeCase(
        "timestamptz",
        pgtypes.TIMESTAMPTZ,
        -1,
        b"1985-03-14 10:20:30+02",
        datetime.datetime(
            1985, 3, 14, 10, 20, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
        ),
        C.BIRTH_DATE,
    ),
    TypeCase("json", pgtypes.JSON, -1, b'"ava@example.com"', Json("ava@example.com"), C.EMAIL),
    TypeCase(
        "json",
        pgtypes.JSON,
        -1,
        b'{"street": "1 Main St"}',
        Json({"street": "1 Main St"}),
        C.ADDRESS,
    ),
    TypeCase("jsonb", pgtypes.JSONB, -1, b'"ava@example.com"', Jsonb("ava@example.com"), C.EMAIL),
    TypeCase(
        "jsonb",
        pgtypes.JSONB,
        -1,
        b'{"street": "1 Main St"}',
        Jsonb({"street": "1 Main St"}),
        C.ADDRESS,
    ),
    TypeCase("bytea", pgtypes.BYTEA, -1, b"\\x736563726574", b"secret", C.PASSWORD),
    TypeCase(
        "inet", pgtypes.INET, -1, b"203.0.113.7", ipaddress.ip_address("203.0.113.7"), C.IP_ADDRESS
    ),
    TypeCase(
        "inet",
        pgtypes.INET,
        -1,
        b"192.168.1.5/24",
        ipaddress.ip_interface("192.168.1.5/24"),
        C.IP_ADDRESS,
    ),
    TypeCase(
        "inet", pgtypes.INET, -1, b"2001:db8::1", ipaddress.ip_address("2001:db8::1"), C.IP_ADDRESS
    ),
    TypeCase(
        "cidr", pgtypes.CIDR, -1, b"10.1.0.0/16", ipaddress.ip_network("10.1.0.0/16"), C.IP_ADDRESS
    ),
    TypeCase("float4", pgtypes.FLOAT4, -1, b"1234.5", 1234.5, C.SECRET, struct.pack(">f", 1234.5)),
    TypeCase("money", pgtypes.MONEY, -1, b"12.34", 1234, C.BANK_ACCOUNT, struct.pack(">q", 1234)),
    TypeCase("bool", pgtypes.BOOL, -1, b"t", True, C.SECRET),
    TypeCase('"char"', pgtypes.CHAR, -1, b"x", "x", C.SECRET, b"x"),
    TypeCase("time", pgtypes.TIME, -1, b"10:20:30", datetime.time(10, 20, 30), C.BIRTH_DATE),
    TypeCase(
        "timetz",
        pgtypes.TIMETZ,
        -1,
        b"10:20:30+02",
        datetime.time(10, 20, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
        C.BIRTH_DATE,
    ),
    TypeCase(
        "interval",
        pgtypes.INTERVAL,
        -1,
        b"1 day 02:00:00",
        datetime.timedelta(days=1, hours=2),
        C.SECRET,
    ),
    TypeCase("text[]", 1009, -1, b'{ava@example.com,"b c"}', ["ava@example.com", "b c"], C.EMAIL),
]

"""Masked values checked by PostgreSQL itself: the server's input functions must accept every
text-format value and its receive functions every binary-format value, for every type,
strategy and DateStyle, and psycopg's binary loaders must decode what comes back."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import pq

from bastion.masking import pgtypes
from bastion.masking.classes import SensitiveClass as C
from bastion.masking.classes import Strategy
from bastion.masking.strategies import mask_value
from bastion.masking.tokens import TokenKey
from support.servers import PostgresEndpoint

from .typecases import CASES, TypeCase

KEY = TokenKey(b"a test key that is long enough")
STRATEGIES = [Strategy.REDACT, Strategy.PARTIAL, Strategy.HASH]


@pytest.fixture(scope="module")
def server(postgres_endpoint: PostgresEndpoint) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(postgres_endpoint.dsn(), autocommit=True) as conn:
        yield conn


def _server_text(conn: psycopg.Connection[tuple[object, ...]], case: TypeCase, fmt: int) -> bytes:
    """What the server itself sends for the case's value (the masker's real input)."""
    result = conn.pgconn.exec_params(
        f"SELECT $1::{case.sql_type}".encode(), [case.text], result_format=fmt
    )
    assert result.status == pq.ExecStatus.TUPLES_OK, result.get_error_message()
    value = result.get_value(0, 0)
    assert value is not None
    return bytes(value)


def _accepts(
    conn: psycopg.Connection[tuple[object, ...]], case: TypeCase, value: bytes, fmt: int
) -> tuple[bool, str, bytes | None]:
    """Whether the server takes `value` as a parameter of the case's type, in format `fmt`,
    and stores it unchanged in a column of that exact type (so varchar(n) and char(n) limits
    apply as they would on an INSERT). Returns the value read back in the same format."""
    conn.pgconn.exec_(f"CREATE TEMP TABLE IF NOT EXISTS masked_probe (v {case.sql_type})".encode())
    conn.pgconn.exec_(b"TRUNCATE masked_probe")
    result = conn.pgconn.exec_params(
        b"INSERT INTO masked_probe VALUES ($1) RETURNING v",
        [value],
        param_types=[case.type_oid],
        param_formats=[fmt],
        result_format=fmt,
    )
    conn.pgconn.exec_(b"DROP TABLE masked_probe")
    if result.status != pq.ExecStatus.TUPLES_OK:
        return False, result.get_error_message(), None
    back = result.get_value(0, 0)
    return True, "", None if back is None else bytes(back)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_every_masked_value_is_valid_for_the_server(
    server: psycopg.Connection[tuple[object, ...]], case: TypeCase
) -> None:
    for fmt in (0, 1):
        original = _server_text(server, case, fmt)
        for strategy in STRATEGIES:
            out = mask_value(
                original,
                strategy,
                case.sensitive_class,
                case.type_oid,
                case.type_modifier,
                fmt,
                KEY,
            )
            assert out is not None
            accepted, error, back = _accepts(server, case, out, fmt)
            assert accepted, (case.id, strategy, fmt, out, error)
            loader = server.adapters.get_loader(case.type_oid, pq.Format(fmt))
            if loader is not None:  # psycopg has none for money
                loader(case.type_oid, server).load(out)
            if case.type_oid == pgtypes.BPCHAR:
                assert len(back or b"") == case.type_modifier - 4


DATESTYLES = ["ISO, MDY", "SQL, DMY", "SQL, MDY", "German", "Postgres, DMY", "Postgres, MDY"]
DATETIME_CASES = [
    ("date", pgtypes.DATE, "1985-03-14"),
    ("timestamp", pgtypes.TIMESTAMP, "1985-03-14 10:20:30.123456"),
    ("timestamptz", pgtypes.TIMESTAMPTZ, "1985-03-14 10:20:30.5+02"),
]


@pytest.mark.parametrize("datestyle", DATESTYLES)
def test_dates_stay_valid_under_every_datestyle(
    server: psycopg.Connection[tuple[object, ...]], datestyle: str
) -> None:
    server.execute(f"SET DateStyle = '{datestyle}'")
    server.execute("SET TimeZone = 'Europe/Paris'")
    try:
        for sql_type, type_oid, literal in DATETIME_CASES:
            result = server.pgconn.exec_params(
                f"SELECT $1::{sql_type}".encode(), [literal.encode()]
            )
            original = result.get_value(0, 0)
            assert original is not None
            for strategy in STRATEGIES:
                out = mask_value(bytes(original), strategy, C.BIRTH_DATE, type_oid, key=KEY)
                assert out is not None
                check = server.pgconn.exec_params(
                    f"SELECT $1::{sql_type}, $1::{sql_type} <> $2::{sql_type}".encode(),
                    [out, literal.encode()],
                )
                assert check.status == pq.ExecStatus.TUPLES_OK, (
                    datestyle,
                    sql_type,
                    out,
                    check.get_error_message(),
                )
                assert check.get_value(0, 1) == b"t", (datestyle, sql_type, out)
    finally:
        server.execute("RESET DateStyle")
        server.execute("RESET TimeZone")


def test_binary_numeric_hashes_read_back_as_the_same_text(
    server: psycopg.Connection[tuple[object, ...]],
) -> None:
    """The binary numeric decoder gives the server's own text, so text and binary results of
    the same value get the same token."""
    for literal in ("0", "-0.000120", "12345.67", "1e20", "NaN", "0.1", "99999999.99999999"):
        text = server.pgconn.exec_params(b"SELECT $1::numeric", [literal.encode()]).get_value(0, 0)
        binary = server.pgconn.exec_params(
            b"SELECT $1::numeric", [literal.encode()], result_format=1
        ).get_value(0, 0)
        assert text is not None and binary is not None
        hashed_text = mask_value(bytes(text), Strategy.HASH, C.SECRET, pgtypes.NUMERIC, key=KEY)
        hashed_binary = mask_value(
            bytes(binary), Strategy.HASH, C.SECRET, pgtypes.NUMERIC, -1, 1, KEY
        )
        assert hashed_text is not None and hashed_binary is not None
        loader = server.adapters.get_loader(pgtypes.NUMERIC, pq.Format.BINARY)
        assert loader is not None
        assert str(loader(pgtypes.NUMERIC, server).load(hashed_binary)) == hashed_text.decode()

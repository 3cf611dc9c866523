"""Whole-value strategies: every output loads with psycopg's own loaders (text and binary),
keeps the column's constraints, hides the value, and hashes deterministically."""

from __future__ import annotations

import datetime
import ipaddress
import json
import uuid
from decimal import Decimal

import psycopg
import pytest
from psycopg.pq import Format

from bastion.errors import ConfigError
from bastion.masking import pgtypes
from bastion.masking.classes import SensitiveClass as C
from bastion.masking.classes import Strategy
from bastion.masking.datetext import redact_template
from bastion.masking.strategies import Constant, mask_value, resolve_masker
from bastion.masking.tokens import TokenKey

from .typecases import CASES, TypeCase

KEY = TokenKey(b"a test key that is long enough")
STRATEGIES = [Strategy.REDACT, Strategy.PARTIAL, Strategy.HASH]


def load(value: bytes, type_oid: int, format_code: int) -> object:
    """The value as psycopg loads it; the raw bytes for the few types psycopg has no loader
    for (money: the server test still checks those)."""
    loader = psycopg.adapters.get_loader(type_oid, Format(format_code))
    if loader is None:
        assert type_oid == pgtypes.MONEY
        return value
    return loader(type_oid, None).load(value)


def masked(case: TypeCase, strategy: Strategy, format_code: int) -> bytes:
    original = case.text if format_code == 0 else case.binary()
    out = mask_value(
        original,
        strategy,
        case.sensitive_class,
        case.type_oid,
        case.type_modifier,
        format_code,
        KEY,
    )
    assert out is not None, "only the null strategy and unknown binary types give NULL"
    return out


CASE_IDS = [case.id for case in CASES]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("format_code", [0, 1])
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_masked_values_load_and_hide_the_original(
    case: TypeCase, strategy: Strategy, format_code: int
) -> None:
    out = masked(case, strategy, format_code)
    loaded = load(out, case.type_oid, format_code)
    original = load(case.text, case.type_oid, 0)
    kept_visible = strategy is Strategy.PARTIAL and case.type_oid in (
        pgtypes.INET,
        pgtypes.CIDR,
    )
    if not kept_visible and case.type_oid not in (pgtypes.NUMERIC,):
        assert loaded != original, (case.id, strategy, out)
    if case.type_oid in (pgtypes.BPCHAR, pgtypes.VARCHAR):
        limit = case.type_modifier - 4
        assert isinstance(loaded, str)
        if case.type_oid == pgtypes.BPCHAR:
            assert len(loaded) == limit, (case.id, strategy, loaded)
        else:
            assert len(loaded) <= limit, (case.id, strategy, loaded)
    if case.type_oid in pgtypes.INTEGER_TYPES and strategy is Strategy.HASH:
        assert isinstance(loaded, int) and loaded >= 0


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_hash_is_deterministic_and_agrees_across_formats(case: TypeCase) -> None:
    text = masked(case, Strategy.HASH, 0)
    binary = masked(case, Strategy.HASH, 1)
    assert text == masked(case, Strategy.HASH, 0)
    assert binary == masked(case, Strategy.HASH, 1)
    comparable = pgtypes.INTEGER_TYPES | {pgtypes.UUID, pgtypes.DATE, pgtypes.TIMESTAMP}
    comparable |= {pgtypes.TIMESTAMPTZ, pgtypes.NUMERIC, pgtypes.TEXT, pgtypes.VARCHAR}
    comparable |= {pgtypes.BPCHAR, pgtypes.JSON, pgtypes.INET, pgtypes.BYTEA, pgtypes.FLOAT8}
    comparable |= {pgtypes.FLOAT4}
    if case.type_oid in comparable:
        assert load(text, case.type_oid, 0) == load(binary, case.type_oid, 1), case.id


def test_hash_depends_on_the_key() -> None:
    other = TokenKey(b"another key, also long enough")
    for type_oid, value in ((pgtypes.TEXT, b"ava@example.com"), (pgtypes.INT8, b"42")):
        one = mask_value(value, Strategy.HASH, C.EMAIL, type_oid, key=KEY)
        two = mask_value(value, Strategy.HASH, C.EMAIL, type_oid, key=other)
        assert one != two


def test_distinct_values_get_distinct_tokens() -> None:
    tokens = {
        mask_value(f"user{i}@example.com".encode(), Strategy.HASH, C.EMAIL, pgtypes.TEXT, key=KEY)
        for i in range(2000)
    }
    assert len(tokens) == 2000


def test_hashed_uuids_are_version_8() -> None:
    out = mask_value(
        b"550e8400-e29b-41d4-a716-446655440000", Strategy.HASH, C.TOKEN, pgtypes.UUID, key=KEY
    )
    assert out is not None
    parsed = uuid.UUID(out.decode())
    assert parsed.version == 8 and parsed.variant == uuid.RFC_4122


def test_hashed_integers_fit_their_width() -> None:
    for type_oid, bits in ((pgtypes.INT2, 16), (pgtypes.INT4, 32), (pgtypes.INT8, 64)):
        for number in range(300):
            out = mask_value(str(number).encode(), Strategy.HASH, C.SSN, type_oid, key=KEY)
            assert out is not None and 0 <= int(out) < 2 ** (bits - 1)


def test_hashed_numerics_fit_their_precision() -> None:
    typmod = ((5 << 16) | 2) + 4  # numeric(5,2): at most 999.99
    for number in range(300):
        out = mask_value(
            f"{number}.25".encode(), Strategy.HASH, C.SECRET, pgtypes.NUMERIC, typmod, key=KEY
        )
        assert out is not None
        value = Decimal(out.decode())
        assert abs(value) < 1000 and value.as_tuple().exponent == -2


def test_hashed_dates_stay_in_the_twentieth_century() -> None:
    for day in range(0, 3000, 7):
        original = (datetime.date(1950, 1, 1) + datetime.timedelta(days=day)).isoformat()
        out = mask_value(original.encode(), Strategy.HASH, C.BIRTH_DATE, pgtypes.DATE, key=KEY)
        assert out is not None
        assert 1900 <= datetime.date.fromisoformat(out.decode()).year <= 1999


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"ava.garcia1@example.com", b"***@example.com"),
        (b"4111-1111-1111-1111", b"****-****-****-1111"),
        (b"+1 (212) 555-0187", b"+* (***) ***-**87"),
        ("Chloé O'Brien".encode(), b"C**** O******"),
        (b"1985-03-14", b"1985-**-**"),
        (b"203.0.113.7", b"203.0.0.0"),
        (b"2001:db8:1234:5678::1", b"2001:db8:1234::"),
        (b"SW1A 1AA", b"SW** ***"),
        (b"GB82WEST12345698765432", b"GB****************5432"),
    ],
)
def test_partial_text_by_class(value: bytes, expected: bytes) -> None:
    classes = {
        b"ava": C.EMAIL,
        b"411": C.CARD_NUMBER,
        b"+1 ": C.PHONE,
        b"Chl": C.PERSON_NAME,
        b"198": C.BIRTH_DATE,
        b"203": C.IP_ADDRESS,
        b"200": C.IP_ADDRESS,
        b"SW1": C.POSTAL_CODE,
        b"GB8": C.IBAN,
    }
    sensitive_class = classes[value[:3]]
    assert mask_value(value, Strategy.PARTIAL, sensitive_class, pgtypes.TEXT) == expected


def test_partial_keeps_the_year_of_dates_and_timestamps() -> None:
    assert mask_value(b"1985-03-14", Strategy.PARTIAL, C.BIRTH_DATE, pgtypes.DATE) == b"1985-01-01"
    out = mask_value(b"1985-03-14 10:20:30+02", Strategy.PARTIAL, C.BIRTH_DATE, pgtypes.TIMESTAMPTZ)
    assert out == b"1985-01-01 00:00:00+00"


def test_partial_integers_keep_the_last_four_digits_of_long_numbers() -> None:
    assert mask_value(b"4111111111114242", Strategy.PARTIAL, C.CARD_NUMBER, pgtypes.INT8) == b"4242"
    assert mask_value(b"1234567", Strategy.PARTIAL, C.CARD_NUMBER, pgtypes.INT8) == b"0"


def test_redact_placeholders() -> None:
    def redact(value: bytes, type_oid: int, typmod: int = -1, fmt: int = 0) -> bytes | None:
        return mask_value(value, Strategy.REDACT, C.SECRET, type_oid, typmod, fmt)

    assert redact(b"secret", pgtypes.TEXT) == b"****"
    assert redact(b"ab", pgtypes.BPCHAR, 2 + 4) == b"**"
    assert redact(b"abcdefgh", pgtypes.BPCHAR, 8 + 4) == b"********"
    assert redact(b"42", pgtypes.INT4) == b"0"
    assert redact(b"*", pgtypes.INT4, fmt=1) == b"\x00\x00\x00\x00"
    assert redact(b"550e8400-e29b-41d4-a716-446655440000", pgtypes.UUID) == (
        b"00000000-0000-0000-0000-000000000000"
    )
    assert redact(b"1985-03-14", pgtypes.DATE) == b"1900-01-01"
    assert redact(b"203.0.113.7", pgtypes.INET) == b"0.0.0.0"
    assert redact(b"2001:db8::1", pgtypes.INET) == b"::"
    assert redact(b"10.1.0.0/16", pgtypes.CIDR) == b"0.0.0.0/0"
    assert redact(b'"x"', pgtypes.JSONB) == b'"****"'
    assert redact(b'\x01"x"', pgtypes.JSONB, fmt=1) == b'\x01"****"'
    assert redact(b"\\x0102", pgtypes.BYTEA) == b"\\x"
    assert redact(b"t", pgtypes.BOOL) == b"f"
    assert redact(b"{a,b}", 1009) == b"{}"
    assert json.loads(redact(b'{"a": 1}', pgtypes.JSON) or b"") == "****"


def test_redact_is_a_constant_the_plan_can_copy() -> None:
    for type_oid in (pgtypes.TEXT, pgtypes.INT8, pgtypes.UUID, pgtypes.JSONB, pgtypes.INET):
        assert isinstance(resolve_masker(Strategy.REDACT, C.SECRET, type_oid), Constant) or (
            type_oid == pgtypes.INET
        )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"1985-03-14", b"1900-01-01"),
        (b"03/14/1985", b"01/01/1900"),
        (b"14.03.1985", b"01.01.1900"),
        (b"03-14-1985", b"01-01-1900"),
        (b"0044-03-15 BC", b"1900-01-01"),
        (b"1985-03-14 10:20:30.123456+05:30", b"1900-01-01 00:00:00.000000+00:00"),
        (b"14/03/1985 10:20:30.123 CET", b"01/01/1900 00:00:00.000 CET"),
        (b"Thu Mar 14 10:20:30.123 1985 PST", b"Mon Jan 01 00:00:00.000 1900 PST"),
        (b"Sat 28 Nov 09:47:03 2026 CET", b"Mon 01 Jan 00:00:00 1900 CET"),
    ],
)
def test_redacted_dates_keep_the_session_datestyle(value: bytes, expected: bytes) -> None:
    assert redact_template(value) == expected


def test_non_iso_dates_are_redacted_by_every_strategy() -> None:
    for strategy in STRATEGIES:
        out = mask_value(b"14.03.1985", strategy, C.BIRTH_DATE, pgtypes.DATE, key=KEY)
        assert out == b"01.01.1900"


def test_null_strategy_and_null_values() -> None:
    assert mask_value(b"x", Strategy.NULL, C.EMAIL, pgtypes.TEXT) is None
    assert mask_value(None, Strategy.REDACT, C.EMAIL, pgtypes.TEXT) is None


def test_unknown_types_are_text_in_text_format_and_null_in_binary() -> None:
    citext = 16_500  # an extension type: its OID differs between databases
    assert mask_value(b"Ava@Example.com", Strategy.PARTIAL, C.EMAIL, citext) == (b"***@Example.com")
    assert mask_value(b"Ava@Example.com", Strategy.PARTIAL, C.EMAIL, citext, -1, 1) is None
    assert mask_value(b"(1,2)", Strategy.REDACT, C.SECRET, pgtypes.POINT) is None


def test_unreadable_values_are_still_masked_never_passed() -> None:
    assert mask_value(b"not a uuid", Strategy.HASH, C.TOKEN, pgtypes.UUID, key=KEY) == (
        b"00000000-0000-0000-0000-000000000000"
    )
    assert mask_value(b"NaN", Strategy.PARTIAL, C.SECRET, pgtypes.INT8) == b"0"
    assert mask_value(b"not an address", Strategy.PARTIAL, C.IP_ADDRESS, pgtypes.INET) == (
        b"0.0.0.0"
    )
    assert mask_value(b"\x01\x02", Strategy.HASH, C.SECRET, pgtypes.DATE, -1, 1, KEY) == (
        (-36524).to_bytes(4, "big", signed=True)
    )


def test_hash_without_a_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="hash key"):
        resolve_masker(Strategy.HASH, C.EMAIL, pgtypes.TEXT)


def test_short_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match="16 bytes"):
        TokenKey(b"short")
    assert "secret" in repr(TokenKey(b"0123456789abcdef"))
    assert "0123" not in repr(TokenKey(b"0123456789abcdef"))


def test_inet_partial_keeps_the_network() -> None:
    out = mask_value(b"192.168.1.5/24", Strategy.PARTIAL, C.IP_ADDRESS, pgtypes.INET)
    assert out is not None
    assert ipaddress.ip_interface(out.decode()) == ipaddress.ip_interface("192.168.0.0/24")
    out = mask_value(b"10.1.2.0/24", Strategy.PARTIAL, C.IP_ADDRESS, pgtypes.CIDR)
    assert out == b"10.1.0.0/16"

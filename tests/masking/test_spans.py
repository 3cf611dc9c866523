"""Masking inside a value: what each strategy leaves, lengths kept, escapes and JSON intact."""

from __future__ import annotations

import json

import pytest

from bastion.errors import ConfigError
from bastion.masking.bulk import ContentScanner, Finding
from bastion.masking.classes import SensitiveClass as C
from bastion.masking.classes import Strategy
from bastion.masking.plan import default_scanner
from bastion.masking.spans import SpanMasker, in_json_string
from bastion.masking.tokens import TokenKey

KEY = TokenKey(b"0123456789abcdef0123456789abcdef")


@pytest.fixture(scope="module")
def scanner() -> ContentScanner:
    return default_scanner()


def masked(
    scanner: ContentScanner, text: str, masker: SpanMasker | None = None, *, json: bool = False
) -> str | None:
    data = text.encode()
    out = (masker or SpanMasker()).mask(data, scanner.scan([data]), json=json)
    return None if out is None else out.decode()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail ava.garcia1@example.com", "mail ***.*******@example.com"),
        ("card 4111 1111 1111 1111.", "card **** **** **** 1111."),
        ("ssn 123-45-6789", "ssn ***-**-****"),
        ("call +1 (415) 555-0134", "call +* (***) ***-**34"),
        ("iban DE89 3704 0044 0532 0130 00", "iban DE** **** **** **** **30 00"),
        ("key ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8", "key ghp_" + "*" * 36),
        ("AKIAIOSFODNN7EXAMPLE", "AKIA****************"),
        ("postgresql://app:s3cr3t@10.0.0.7/shop", "postgresql://app:******@10.0.0.7/shop"),
    ],
)
def test_default_strategies_inside_text(scanner: ContentScanner, text: str, expected: str) -> None:
    assert masked(scanner, text) == expected


def test_redact_everything(scanner: ContentScanner) -> None:
    masker = SpanMasker({c: Strategy.REDACT for c in C})
    assert masked(scanner, "ava@example.com 4111111111111111", masker) == (
        "***@*******.*** ****************"
    )


def test_hash_is_deterministic_and_keeps_length(scanner: ContentScanner) -> None:
    masker = SpanMasker({C.EMAIL: Strategy.HASH, C.CARD_NUMBER: Strategy.HASH}, KEY)
    first = masked(scanner, "ava@example.com and 4111111111111111", masker)
    again = masked(scanner, "x ava@example.com y 4111111111111111 z", masker)
    assert first is not None and again is not None
    assert len(first) == len("ava@example.com and 4111111111111111")
    assert "ava" not in first and "4111111111111111" not in first
    assert first.split(" and ")[0] == again.split(" ")[1]  # same value, same token
    other = SpanMasker({C.EMAIL: Strategy.HASH}, TokenKey(b"another key, 16+ bytes"))
    assert masked(scanner, "ava@example.com", other) != first.split(" and ")[0]


def test_the_hash_strategy_needs_a_key() -> None:
    with pytest.raises(ConfigError, match="hash key"):
        SpanMasker({C.EMAIL: Strategy.HASH})


def test_null_strategy_nulls_the_whole_value(scanner: ContentScanner) -> None:
    masker = SpanMasker({C.SSN: Strategy.NULL})
    assert masked(scanner, "ssn 123-45-6789", masker) is None
    assert masked(scanner, "nothing", masker) == "nothing"


def test_escape_sequences_are_never_rewritten(scanner: ContentScanner) -> None:
    text = (
        r'{"k": "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\u00e9IBAAK\tCAQ\n'
        r'-----END RSA PRIVATE KEY-----"}'
    )
    out = masked(scanner, text, json=True)
    assert out is not None
    value = json.loads(out)["k"]
    assert value.startswith("-----BEGIN RSA PRIVATE KEY-----\n")
    assert value.endswith("\n-----END RSA PRIVATE KEY-----")
    assert "MIIE" not in value and "é" in value and "\t" in value


def test_digits_in_json_numbers_stay_digits(scanner: ContentScanner) -> None:
    text = '{"card": 4111111111111111, "note": "4111111111111111"}'
    out = masked(scanner, text, json=True)
    assert out is not None
    parsed = json.loads(out)
    assert isinstance(parsed["card"], int) and parsed["card"] != 4111111111111111
    assert parsed["note"] == "************1111"


def test_hash_in_a_json_number_never_starts_with_zero() -> None:
    masker = SpanMasker({C.CARD_NUMBER: Strategy.HASH}, KEY)
    for number in (4111111111111111, 5555555555554444, 378282246310005, 6011111111111117):
        data = f"[{number}]".encode()
        finding = Finding(0, 1, len(data) - 1, "card_number", C.CARD_NUMBER)
        out = masker.mask(data, [finding], json=True)
        assert out is not None and isinstance(json.loads(out)[0], int)


@pytest.mark.parametrize(
    ("document", "position", "inside"),
    [
        ('{"a": "x"}', 7, True),
        ('{"a": "x"}', 5, False),
        ('{"a": "\\"x"}', 9, True),
        ('{"a": "\\\\", "b": 1}', 17, False),
    ],
)
def test_in_json_string(document: str, position: int, inside: bool) -> None:
    assert in_json_string(document.encode(), position) is inside


def test_short_values_keep_at_most_half_visible() -> None:
    masker = SpanMasker()
    data = b"12345"
    out = masker.mask(data, [Finding(0, 0, 5, "x", C.CARD_NUMBER)])
    assert out == b"***45"

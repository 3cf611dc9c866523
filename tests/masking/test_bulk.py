"""The batch scan: one Hyperscan call over many values, findings mapped back to each value."""

from __future__ import annotations

import pytest

from bastion.errors import ConfigError
from bastion.masking.bulk import ContentScanner, Finding, resolve_overlaps
from bastion.masking.classes import SensitiveClass as C
from bastion.masking.detectors import DEFAULT_DETECTORS
from bastion.masking.plan import default_scanner
from bastion.masking.user_patterns import UserPattern


@pytest.fixture(scope="module")
def scanner() -> ContentScanner:
    return default_scanner()


def test_offsets_are_relative_to_each_value(scanner: ContentScanner) -> None:
    values = [b"nothing here", b"x ava@example.com", b"", b"4111111111111111 and bob@example.org"]
    findings = sorted(scanner.scan(values))
    assert [(f.field, values[f.field][f.start : f.end]) for f in findings] == [
        (1, b"ava@example.com"),
        (3, b"4111111111111111"),
        (3, b"bob@example.org"),
    ]


def test_memoryviews_are_scanned_like_bytes(scanner: ContentScanner) -> None:
    row = memoryview(b"..ava@example.com..")
    [finding] = scanner.scan([row[2:17]])
    assert (finding.field, finding.start, finding.end) == (0, 0, 15)


def test_no_match_spans_two_values(scanner: ContentScanner) -> None:
    """A card number split across two adjacent values, an e-mail split at its @, an SSN split
    in the middle: none may be found, as the values are separate cells."""
    assert scanner.scan([b"4111 1111", b"1111 1111"]) == []
    assert scanner.scan([b"ava", b"@example.com"]) == []
    assert scanner.scan([b"ava@", b"example.com"]) == []
    assert scanner.scan([b"123-45", b"-6789"]) == []
    assert scanner.scan([b"-----BEGIN RSA PRIVATE", b" KEY-----\nabc"]) == []


def test_a_value_may_not_smuggle_the_separator(scanner: ContentScanner) -> None:
    """Text values cannot contain NUL in PostgreSQL; if one ever did, it would only split a
    match, never join two values."""
    findings = scanner.scan([b"a\x00ava@example.com", b"x"])
    assert [(f.field, f.start) for f in findings] == [(0, 2)]


def test_the_scan_reports_each_occurrence_once(scanner: ContentScanner) -> None:
    text = b"+1 (415) 555-0134 " * 3
    findings = [f for f in scanner.scan([text]) if f.detector == "phone_international"]
    assert len(findings) == 3


def test_an_empty_batch_and_empty_values(scanner: ContentScanner) -> None:
    assert scanner.scan([]) == []
    assert scanner.scan([b"", b"", b""]) == []


def test_a_scanner_with_only_some_detectors() -> None:
    emails_only = ContentScanner([d for d in DEFAULT_DETECTORS if d.name == "email"])
    assert {f.detector for f in emails_only.scan([b"ava@example.com 4111111111111111"])} == {
        "email"
    }
    with pytest.raises(ValueError):
        ContentScanner([])


def test_overlapping_findings_merge_into_the_stronger_class() -> None:
    findings = [
        Finding(0, 10, 20, "phone_nanp", C.PHONE),
        Finding(0, 5, 15, "card_number", C.CARD_NUMBER),
        Finding(0, 30, 40, "email", C.EMAIL),
        Finding(0, 0, 3, "email", C.EMAIL),
    ]
    assert [(f.start, f.end, f.sensitive_class) for f in resolve_overlaps(findings)] == [
        (0, 3, C.EMAIL),
        (5, 20, C.CARD_NUMBER),
        (30, 40, C.EMAIL),
    ]


class TestUserPatterns:
    def test_found_in_every_value_and_anchored_per_value(self) -> None:
        scanner = ContentScanner(
            user_patterns=[
                UserPattern("employee", r"EMP-\d{6}", C.NATIONAL_ID),
                UserPattern("whole_value", r"^INT-[A-Z]{3}$", C.SECRET),
            ]
        )
        values = [b"EMP-123456 and EMP-654321", b"none", b"INT-ABC", b"x INT-ABC"]
        found = sorted((f.field, f.start, f.end, f.detector) for f in scanner.scan(values))
        assert found == [
            (0, 0, 10, "employee"),
            (0, 15, 25, "employee"),
            (2, 0, 7, "whole_value"),
        ]

    def test_a_pattern_that_cannot_match_costs_one_prefilter_call(self) -> None:
        scanner = ContentScanner(user_patterns=[UserPattern("p", r"ZZZ\d+", C.SECRET)])
        assert scanner.user_patterns.candidates([b"a", b"b", b"c"]) == []
        assert scanner.user_patterns.candidates([b"a", b"ZZZ1"]) == [0]

    def test_catastrophic_patterns_run_in_linear_time(self) -> None:
        """(a+)+$ takes exponential time in a backtracking engine on this input; RE2 does not
        backtrack."""
        scanner = ContentScanner(user_patterns=[UserPattern("redos", r"(a+)+$", C.SECRET)])
        assert scanner.scan([b"a" * 50_000 + b"!"]) == []

    @pytest.mark.parametrize(
        ("regex", "message"),
        [
            (r"(a)\1", "not a valid RE2 expression"),
            (r"(?=x)y", "not a valid RE2 expression"),
            (r"x*", "matches the empty string"),
            (r"\Aabc", "not supported"),
        ],
    )
    def test_bad_patterns_are_configuration_errors(self, regex: str, message: str) -> None:
        with pytest.raises(ConfigError, match="'bad'") as raised:
            ContentScanner(user_patterns=[UserPattern("bad", regex, C.SECRET)])
        assert message in raised.value.message


def test_big_batches_are_scanned_in_bounded_pieces(
    scanner: ContentScanner, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = [f"row {i}: ava{i}@example.com and 4111 1111 1111 1111".encode() for i in range(50)]
    values[7] = b"x" * 300 + b" bob@example.org"  # one value larger than a piece
    whole = sorted(scanner.scan(values))
    monkeypatch.setattr("bastion.masking.bulk.MAX_SCAN_BYTES", 120)
    pieces = sorted(scanner.scan(values))
    assert pieces == whole
    assert {f.field for f in pieces} == set(range(50))

"""Content detection through the real Hyperscan scanner: what it must find, exactly where, and
what it must leave alone."""

from __future__ import annotations

import pytest

from bastion.demo.sample import generate_sample
from bastion.masking.bulk import ContentScanner, Finding, resolve_overlaps
from bastion.masking.classes import SensitiveClass as C
from bastion.masking.detectors import DEFAULT_DETECTORS
from bastion.masking.plan import default_scanner


@pytest.fixture(scope="module")
def scanner() -> ContentScanner:
    return default_scanner()


def found(scanner: ContentScanner, text: str) -> list[tuple[str, C]]:
    """(matched text, class) for every finding in one value, in order, overlaps merged as
    masking merges them."""
    data = text.encode()
    return [
        (data[f.start : f.end].decode(), f.sensitive_class)
        for f in resolve_overlaps(scanner.scan([data]))
    ]


def classes(scanner: ContentScanner, text: str) -> set[C]:
    return {finding.sensitive_class for finding in scanner.scan([text.encode()])}


@pytest.mark.parametrize(
    ("detector", "example"),
    [(d.name, example) for d in DEFAULT_DETECTORS for example in d.examples],
)
def test_every_detector_finds_its_examples(
    scanner: ContentScanner, detector: str, example: str
) -> None:
    for text in (example, f"see {example} here", f'{{"v": "{example}"}}'):
        hits = [f for f in scanner.scan([text.encode()]) if f.detector == detector]
        assert hits, (detector, text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail ava.garcia1@example.com now", [("ava.garcia1@example.com", C.EMAIL)]),
        ("end of sentence: bob@example.org.", [("bob@example.org", C.EMAIL)]),
        ("to first_last@example.com", [("first_last@example.com", C.EMAIL)]),
        ("see...alice@example.com", [("alice@example.com", C.EMAIL)]),
        ("card 4111 1111 1111 1111 exp", [("4111 1111 1111 1111", C.CARD_NUMBER)]),
        ("card 4111-1111-1111-1111", [("4111-1111-1111-1111", C.CARD_NUMBER)]),
        ("amex 378282246310005", [("378282246310005", C.CARD_NUMBER)]),
        ("Order 1234 4242 4242 4242 4242", [("4242 4242 4242 4242", C.CARD_NUMBER)]),
        ("ssn 123-45-6789.", [("123-45-6789", C.SSN)]),
        ("call +1 (415) 555-0134 today", [("+1 (415) 555-0134", C.PHONE)]),
        ("call (212) 555-0187", [("(212) 555-0187", C.PHONE)]),
        ("call 1-800-555-0199", [("1-800-555-0199", C.PHONE)]),
        ("ring +44 20 7946 0958", [("+44 20 7946 0958", C.PHONE)]),
        ("appelez le 01 23 45 67 89", [("01 23 45 67 89", C.PHONE)]),
        ("iban DE89 3704 0044 0532 0130 00 ok", [("DE89 3704 0044 0532 0130 00", C.IBAN)]),
        ("iban GB82WEST12345698765432", [("GB82WEST12345698765432", C.IBAN)]),
        ("AKIAIOSFODNN7EXAMPLE leaked", [("AKIAIOSFODNN7EXAMPLE", C.API_KEY)]),
        # The password also reads as an e-mail address with the host: both are masked.
        (
            "postgresql://app:s3cr3t-pass@db.internal:5432/shop",
            [("s3cr3t-pass@db.internal", C.PASSWORD)],
        ),
        ("postgresql://app:s3cr3t@10.0.0.7/shop", [("s3cr3t", C.PASSWORD)]),
        ('{"password": "correct horse battery"}', [("correct horse battery", C.PASSWORD)]),
        ("DB_PASSWORD=hunter2! next", [("hunter2!", C.PASSWORD)]),
        (
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            [("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", C.SECRET)],
        ),
    ],
)
def test_exact_spans(scanner: ContentScanner, text: str, expected: list[tuple[str, C]]) -> None:
    assert found(scanner, text) == expected


def test_a_private_key_body_is_found_up_to_its_footer(scanner: ContentScanner) -> None:
    key = (
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\n"
        "-----END OPENSSH PRIVATE KEY-----"
    )
    [(span, sensitive_class)] = found(scanner, f"note: {key} end")
    assert sensitive_class is C.PRIVATE_KEY
    assert span == "\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\n"


def test_a_truncated_private_key_is_found_to_the_end_of_the_value(
    scanner: ContentScanner,
) -> None:
    [finding] = scanner.scan([b"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0B", b"next"])
    assert finding.field == 0 and finding.end == len(
        b"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0B"
    )


def test_a_jwt_is_found_whole(scanner: ContentScanner) -> None:
    jwt = (
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ."
        "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
    )
    assert found(scanner, jwt) == [(jwt, C.JWT)]
    assert found(scanner, f"Authorization: Bearer {jwt}") == [(jwt, C.JWT)]
    assert found(scanner, f'{{"id_token": "{jwt}"}}') == [(jwt, C.JWT)]


def test_a_jwt_lookalike_without_an_alg_header_is_not_a_jwt(scanner: ContentScanner) -> None:
    fake = "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"  # header {"typ":"JWT"}
    assert C.JWT not in classes(scanner, fake)


def test_demo_values_are_all_found(scanner: ContentScanner) -> None:
    """The sample shop's sensitive values, one value each, and the secrets hidden in notes."""
    data = generate_sample(200)
    cases: list[tuple[str, C]] = []
    for customer in data.customers:
        cases += [
            (customer.email, C.EMAIL),
            (customer.phone, C.PHONE),
            (customer.card_number, C.CARD_NUMBER),
            (customer.ssn, C.SSN),
        ]
    for credential in data.api_credentials:
        cases.append((credential.token, C.TOKEN))
        cases.append((credential.created_by, C.EMAIL))
    findings = scanner.scan([value.encode() for value, _ in cases])
    by_field: dict[int, list[Finding]] = {}
    for finding in findings:
        by_field.setdefault(finding.field, []).append(finding)
    for index, (value, expected) in enumerate(cases):
        hits = by_field.get(index, [])
        assert hits, value
        covered = max(hits, key=lambda f: f.end - f.start)
        assert (covered.start, covered.end) == (0, len(value)), (value, hits)
        if expected is not C.TOKEN:  # tokens are api_key, token or secret by their kind
            assert covered.sensitive_class is expected, (value, hits)
    for customer_id, hidden in data.hidden_in_notes.items():
        note = data.customers[customer_id - 1].notes
        assert note is not None
        assert any(span == hidden for span, _ in found(scanner, note)), note


@pytest.mark.parametrize(
    "text",
    [
        "Prefers delivery after 5pm.",
        "Leave parcels with the neighbour at number 12.",
        "order 12345678901 shipped",  # an 11-digit order number
        "id 550e8400-e29b-41d4-a716-446655440000",
        "id 12345678-1234-1234-1234-123456789012",  # an all-digit UUID
        "at 2024-03-01 10:20:30.123456+00",
        "at 2024-03-01T10:20:30Z",
        "total 1234567890123.45 EUR",
        "amount 4111111111111111.50",  # a card-shaped number with decimals is an amount
        "x4111111111111111",  # inside a word
        "4111111111111111x",
        "sha1 2fd4e1c67a2d28fced849ee1bb76e7391b93eb12",
        "version 1.2.3.4 build 20240301",
        "ref 123-45-67890",  # SSN-like, but one digit too many
        "ref 123-45-6789-1",  # part of a longer dash-separated number
        "ISO8601 duration P1Y2M10DT2H30M",
        "use sk-learn-compatible-estimators-and-friends for that",
        "the task-runner-configuration-file-name is here",
        "password: ****",
        "password=null",
        "mailto: nobody at example dot com",
        "follow @example.com and @shop.example.org",  # an @ with no local part before it
        "reply to .@example.com or -@example.com",
        "AKIA is a prefix, AKIAshort too",
        "ghp_tooshort",
        "Bearer of bad news",
    ],
)
def test_nothing_is_found_in_ordinary_text(scanner: ContentScanner, text: str) -> None:
    assert found(scanner, text) == []


def test_json_escapes_count_as_boundaries_and_are_not_swallowed(
    scanner: ContentScanner,
) -> None:
    text = r'{"note": "line one\nava@example.com\t4111111111111111\nDone"}'
    spans = found(scanner, text)
    assert ("ava@example.com", C.EMAIL) in spans
    assert ("4111111111111111", C.CARD_NUMBER) in spans


def test_an_escaped_quote_ends_a_credential_value(scanner: ContentScanner) -> None:
    text = r'{"cfg": "password=\"s3cret-value\" other"}'
    assert found(scanner, text) == [("s3cret-value", C.PASSWORD)]


def test_publishable_stripe_keys_are_public(scanner: ContentScanner) -> None:
    assert found(scanner, "pk_live_51H8abcdefghijklmnopqrstuvwxyz") == []

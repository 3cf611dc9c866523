"""Property tests: generated ordinary values are never reported, generated sensitive values
always are, and masking keeps every value the same length (and JSON valid)."""

from __future__ import annotations

import base64
import datetime
import json
import string
import uuid
from decimal import Decimal

from hypothesis import example, given, settings
from hypothesis import strategies as st

from bastion.masking.bulk import ContentScanner
from bastion.masking.classes import SensitiveClass as C
from bastion.masking.plan import default_scanner
from bastion.masking.spans import SpanMasker
from bastion.masking.validators import card_number_valid, luhn_valid

SCANNER: ContentScanner = default_scanner()
MASKER = SpanMasker()
FAST = settings(max_examples=150, deadline=None)


def findings(text: str) -> set[C]:
    return {f.sensitive_class for f in SCANNER.scan([text.encode()])}


# -- no false positives ----------------------------------------------------------------------


@FAST
@given(st.integers(min_value=-(10**12) + 1, max_value=10**12 - 1))
def test_integers_below_thirteen_digits_are_never_reported(number: int) -> None:
    assert findings(str(number)) == set()
    assert findings(f"qty {number} units") == set()


@FAST
@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
@example(4111111111111111)
def test_a_large_integer_is_reported_only_when_it_is_a_card_number(number: int) -> None:
    """Any int64 reported is reported as a card and is one: issuer prefix, length, Luhn."""
    reported = SCANNER.scan([str(number).encode()])
    for finding in reported:
        assert finding.sensitive_class is C.CARD_NUMBER
        assert card_number_valid(str(abs(number)).encode())
    if not card_number_valid(str(abs(number)).encode()):
        assert reported == []


@FAST
@given(st.uuids())
def test_uuids_are_never_reported(value: uuid.UUID) -> None:
    assert findings(str(value)) == set()
    assert findings(str(value).upper()) == set()


@FAST
@given(st.from_regex(r"[0-9]{8}-[0-9]{4}-[0-9]{4}-[0-9]{4}-[0-9]{12}", fullmatch=True))
def test_all_digit_uuids_are_never_reported(value: str) -> None:
    assert findings(value) == set()


@FAST
@given(st.datetimes(timezones=st.timezones() | st.just(datetime.UTC)))
def test_timestamps_are_never_reported(moment: datetime.datetime) -> None:
    assert findings(moment.isoformat()) == set()
    assert findings(moment.isoformat(sep=" ")) == set()
    assert findings(moment.strftime("%d/%m/%Y %H:%M:%S")) == set()


@FAST
@given(st.dates())
def test_dates_are_never_reported(day: datetime.date) -> None:
    assert findings(day.isoformat()) == set()
    assert findings(day.strftime("%d.%m.%Y")) == set()


@FAST
@given(st.decimals(min_value=-(10**15), max_value=10**15, places=2, allow_nan=False))
def test_decimal_amounts_are_never_reported(amount: Decimal) -> None:
    assert findings(str(amount)) == set()
    assert findings(f"total {amount} EUR") == set()


@FAST
@given(
    st.sampled_from(["ord", "cus", "inv", "usr", "txn"]),
    st.integers(min_value=0, max_value=10**12),
)
def test_prefixed_ids_are_never_reported(prefix: str, number: int) -> None:
    assert findings(f"{prefix}_{number}") == set()
    assert findings(f"{prefix}-{number:012d}") == set()


# -- no false negatives ----------------------------------------------------------------------

_CARD_PREFIXES = [("4", 16), ("4", 13), ("51", 16), ("55", 16), ("2221", 16), ("34", 15)]
_CARD_PREFIXES += [("37", 15), ("6011", 16), ("65", 16), ("3530", 16), ("36", 14)]


@st.composite
def card_numbers(draw: st.DrawFn) -> str:
    prefix, length = draw(st.sampled_from(_CARD_PREFIXES))
    body = prefix + draw(
        st.text(string.digits, min_size=length - len(prefix) - 1, max_size=length - len(prefix) - 1)
    )
    check = next(d for d in string.digits if luhn_valid((body + d).encode()))
    number = body + check
    if len(set(number)) == 1:
        number = "4111111111111111"
    return number


@st.composite
def ssns(draw: st.DrawFn) -> str:
    area = draw(st.integers(1, 899).filter(lambda a: a != 666))
    group = draw(st.integers(1, 99))
    serial = draw(st.integers(1, 9999))
    return f"{area:03d}-{group:02d}-{serial:04d}"


def _iban(country: str, bban: str) -> str:
    rearranged = bban + country + "00"
    number = int("".join(str(int(char, 36)) for char in rearranged))
    return f"{country}{98 - number % 97:02d}{bban}"


@st.composite
def ibans(draw: st.DrawFn) -> str:
    country, length = draw(st.sampled_from([("DE", 18), ("FR", 23), ("NL", 14), ("ES", 20)]))
    if country == "NL":
        bban = draw(st.text(string.ascii_uppercase, min_size=4, max_size=4)) + draw(
            st.text(string.digits, min_size=10, max_size=10)
        )
    else:
        bban = draw(st.text(string.digits, min_size=length, max_size=length))
    return _iban(country, bban)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@st.composite
def jwts(draw: st.DrawFn) -> str:
    header = {"alg": draw(st.sampled_from(["HS256", "RS256", "ES256", "none"])), "typ": "JWT"}
    payload = {"sub": draw(st.text(string.ascii_letters, min_size=1, max_size=12))}
    signature = draw(st.binary(min_size=16, max_size=64))
    parts = [json.dumps(header), json.dumps(payload)]
    return ".".join([_b64url(p.encode()) for p in parts] + [_b64url(signature)])


_LABEL = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=12)


@st.composite
def emails(draw: st.DrawFn) -> str:
    words = draw(st.lists(_LABEL, min_size=1, max_size=3))
    separators = draw(st.lists(st.sampled_from("._+-"), min_size=len(words), max_size=len(words)))
    local = words[0] + "".join(
        sep + word for sep, word in zip(separators[1:], words[1:], strict=True)
    )
    domain = ".".join(draw(st.lists(_LABEL, min_size=1, max_size=3)))
    tld = draw(st.text(string.ascii_lowercase, min_size=2, max_size=6))
    return f"{local}@{domain}.{tld}"


_CONTEXT = st.sampled_from(["", "see ", "value: ", '"', "(", "note\n"])
_AFTER = st.sampled_from(["", " ok", ".", '"', ")", ", then", "\n"])


def _reported_whole(value: str, before: str, after: str, expected: C) -> None:
    text = before + value + after
    data = text.encode()
    spans = {(f.start, f.end) for f in SCANNER.scan([data]) if f.sensitive_class is expected}
    start = len(before.encode())
    assert (start, start + len(value)) in spans, (text, spans)


@FAST
@given(card_numbers(), _CONTEXT, _AFTER, st.sampled_from(["", " ", "-"]))
def test_generated_cards_are_found(number: str, before: str, after: str, separator: str) -> None:
    if separator and len(number) == 16:
        number = separator.join(number[i : i + 4] for i in range(0, 16, 4))
    _reported_whole(number, before, after, C.CARD_NUMBER)


@FAST
@given(ssns(), _CONTEXT, _AFTER)
def test_generated_ssns_are_found(ssn: str, before: str, after: str) -> None:
    _reported_whole(ssn, before, after, C.SSN)


@FAST
@given(ibans(), _CONTEXT, _AFTER, st.booleans())
def test_generated_ibans_are_found(iban: str, before: str, after: str, grouped: bool) -> None:
    if grouped:
        iban = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    _reported_whole(iban, before, after, C.IBAN)


@FAST
@given(jwts(), _CONTEXT, _AFTER)
def test_generated_jwts_are_found(token: str, before: str, after: str) -> None:
    _reported_whole(token, before, after, C.JWT)


@FAST
@given(emails(), _CONTEXT, _AFTER)
def test_generated_emails_are_found(address: str, before: str, after: str) -> None:
    _reported_whole(address, before, after, C.EMAIL)


# -- masking keeps shape -----------------------------------------------------------------


@FAST
@given(
    st.lists(
        st.one_of(card_numbers(), ssns(), ibans(), jwts(), emails(), st.text(max_size=20)),
        min_size=1,
        max_size=5,
    )
)
def test_masking_keeps_the_length_and_removes_every_finding(parts: list[str]) -> None:
    text = " | ".join(parts)
    data = text.encode()
    found = SCANNER.scan([data])
    masked = MASKER.mask(data, found)
    assert masked is not None and len(masked) == len(data)
    assert masked.decode() is not None  # still valid UTF-8
    for finding in found:
        original = data[finding.start : finding.end]
        if finding.sensitive_class is not C.EMAIL:
            assert masked[finding.start : finding.end] != original


@FAST
@given(st.lists(st.one_of(card_numbers(), ssns(), jwts(), emails()), min_size=1, max_size=4))
def test_masked_json_documents_stay_valid(secrets: list[str]) -> None:
    document = {
        "notes": " ".join(secrets),
        "list": secrets,
        "nested": {"line": "a\n" + secrets[0] + "\tb"},
        "number": int(secrets[0]) if secrets[0].isdigit() else 1,
    }
    data = json.dumps(document).encode()
    found = SCANNER.scan([data])
    assert found
    masked = MASKER.mask(data, found, json=True)
    assert masked is not None
    parsed = json.loads(masked)
    assert set(parsed) == set(document)
    for secret in secrets:
        if "@" not in secret:  # e-mail domains stay visible by design
            assert secret not in masked.decode()

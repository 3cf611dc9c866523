"""The C rewrite of findings inside a value against the Python one: the same bytes.

`SpanMasker.mask` in Python is the reference. Each masker here is built twice, with and
without `bastion.masking._spans`, and both mask the same values and findings: any strategy
mix (hash and null fall back to Python), overlapping findings, kept prefixes, backslash
escapes and bytes past ASCII.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.masking.bulk import Finding
from bastion.masking.classes import SensitiveClass as C
from bastion.masking.classes import Strategy
from bastion.masking.spans import NATIVE_SPANS, SpanMasker
from bastion.masking.tokens import TokenKey

pytestmark = pytest.mark.skipif(not NATIVE_SPANS, reason="the C span rewrite is not built")

KEY = TokenKey(b"native spans test key, 16+ bytes")
# Pieces that steer the rewrite (escapes, @, letters and digits), now and then any byte.
PIECES = [b"\\u00e9", b"\\n", b"\\\\", b"@", b"ab", b"Z9", b"1234", b".", b"-", b" ", b'"']
values = st.lists(
    st.one_of(st.sampled_from(PIECES), st.binary(min_size=1, max_size=1)), max_size=30
).map(b"".join)
CLASSES = [C.EMAIL, C.CARD_NUMBER, C.SSN, C.PHONE, C.TOKEN, C.PASSWORD, C.IBAN]


@st.composite
def findings_in(draw: st.DrawFn, value: bytes) -> list[Finding]:
    found = []
    for _ in range(draw(st.integers(0, 4))):
        start = draw(st.integers(0, len(value)))
        end = draw(st.integers(start, len(value)))
        kept = draw(st.integers(0, max(0, end - start - 1)))
        found.append(Finding(0, start, end, "test", draw(st.sampled_from(CLASSES)), kept))
    return found


@settings(max_examples=1500)
@given(
    st.data(),
    values,
    st.dictionaries(
        st.sampled_from(CLASSES),
        st.sampled_from([Strategy.REDACT, Strategy.PARTIAL, Strategy.HASH, Strategy.NULL]),
    ),
)
def test_the_c_rewrite_gives_the_same_bytes(
    data: st.DataObject, value: bytes, strategies: dict[C, Strategy]
) -> None:
    findings = data.draw(findings_in(value))
    if not findings:
        return
    native = SpanMasker(strategies, KEY)
    python = SpanMasker(strategies, KEY, native=False)
    json = data.draw(st.booleans())
    assert native.mask(value, findings, json=json) == python.mask(value, findings, json=json)


@pytest.mark.parametrize(
    ("text", "start", "end", "sensitive_class"),
    [
        (b"mail ava@example.com now", 5, 20, C.EMAIL),  # the local part only
        (b"@example.com", 0, 12, C.EMAIL),  # no local part: kept ends
        (b"line\\nava@example.com", 5, 21, C.EMAIL),  # the escape stays whole
        (b"key \\u00e9abcdef12345678", 4, 24, C.TOKEN),
        (b"4111 1111 1111 1111", 0, 19, C.CARD_NUMBER),
        (b"ab", 0, 2, C.CARD_NUMBER),  # too short to keep anything
        (b"\xc3\xa9t\xc3\xa9 123-45-6789", 6, 17, C.SSN),
    ],
)
def test_known_shapes_match(text: bytes, start: int, end: int, sensitive_class: C) -> None:
    for strategy in (Strategy.REDACT, Strategy.PARTIAL):
        found = [Finding(0, start, end, "test", sensitive_class)]
        native = SpanMasker({sensitive_class: strategy})
        python = SpanMasker({sensitive_class: strategy}, native=False)
        assert native.mask(text, found) == python.mask(text, found), (text, strategy)


def test_bad_spans_are_refused() -> None:
    from bastion.masking import _spans

    with pytest.raises(IndexError):
        _spans.mask(b"abc", [(1, 9, _spans.REDACT, 0, 0)])
    with pytest.raises(ValueError, match="operation"):
        _spans.mask(b"abc", [(0, 1, 7, 0, 0)])
    with pytest.raises(TypeError):
        _spans.mask(b"abc", [(0, 1)])
    assert _spans.mask(b"a-b", []) == b"a-b"


def test_a_one_byte_value_is_masked_in_a_copy_of_its_own() -> None:
    # CPython shares one bytes object per single byte; masking must never write into it.
    from bastion.masking import _spans

    assert _spans.mask(b"q", [(0, 1, _spans.REDACT, 0, 0)]) == b"*"
    assert bytes([0x71]) == b"q"
    assert b"q".decode() == "q"

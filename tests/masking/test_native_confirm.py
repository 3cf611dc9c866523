"""The C detector checks against their Python twins: the same span, or the same None.

`candidates.confirm_email`, `token(...)` and `fixed(...)` in Python are the reference; the C
ones (`bastion.masking._confirm`) must answer exactly as they do for any buffer and candidate,
including the NUL bytes that separate values, backslash escapes and bytes past ASCII.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.masking import candidates
from bastion.masking.candidates import BASE64, BASE64URL, NATIVE_CONFIRM
from bastion.masking.validators import ALNUM, WORD

pytestmark = pytest.mark.skipif(not NATIVE_CONFIRM, reason="the C checks are not built")

# Bytes that steer the checks, many times over, and now and then any byte at all.
STEERING = b"ab.-_%+@\\n0/ \x00Zx9"
buffers = st.lists(
    st.one_of(st.sampled_from(list(STEERING)), st.integers(0, 255)), max_size=120
).map(bytes)

SETS = [ALNUM, WORD, BASE64URL, BASE64, ALNUM | frozenset(b"/"), ALNUM | frozenset(b"-")]
BOUNDARIES = [*SETS, frozenset()]


def test_a_built_installation_uses_the_c_checks() -> None:
    assert candidates.email() is not candidates.confirm_email
    assert type(candidates.token(ALNUM)).__module__ == "bastion.masking._confirm"
    assert type(candidates.fixed()).__module__ == "bastion.masking._confirm"
    # A token with a check of its own stays in Python.
    looks = candidates.token(BASE64URL, check=candidates.looks_random)
    assert type(looks).__module__ != "bastion.masking._confirm"


@settings(max_examples=1500)
@given(st.data(), buffers)
def test_email_answers_as_in_python(data: st.DataObject, body: bytes) -> None:
    buffer = body + b"@" + data.draw(buffers)
    at = len(body)
    start = data.draw(st.integers(0, at))
    end = data.draw(st.integers(at + 1, len(buffer)))
    assert candidates.email()(buffer, start, end) == candidates.confirm_email(buffer, start, end)


@pytest.mark.parametrize(
    "text",
    [
        b"mail ava.garcia1@example.com now",
        b"see...alice@example.com",
        b"--bob@example.org.",
        b"line\\nava@example.com",
        b"\\@example.com",
        b"x@xn--bcher-kva.example",
        b"x@example.c0m",
        b"a@b.co",
        b"a@-bad.example.com",
        b"a@bad-.example.com",
        b"a@exa..mple.com",
        b"a" * 70 + b"@example.com",
        b"b@" + b"a" * 260 + b".com",
        b"\x00ann@example.com\x00bob@example.com",
    ],
)
def test_email_answers_as_in_python_on_known_shapes(text: bytes) -> None:
    at = text.index(b"@")
    for start in range(0, at + 1):
        for end in (at + 1, min(len(text), at + 6), len(text)):
            native = candidates.email()(text, start, end)
            assert native == candidates.confirm_email(text, start, end), (text, start, end)


@settings(max_examples=1500)
@given(
    st.data(),
    buffers,
    st.sampled_from(SETS),
    st.sampled_from(BOUNDARIES),
    st.sampled_from([0, 1, 5, 40, 256]),
)
def test_token_answers_as_in_python(
    data: st.DataObject,
    buffer: bytes,
    allowed: frozenset[int],
    boundary: frozenset[int],
    limit: int,
) -> None:
    start = data.draw(st.integers(0, len(buffer)))
    end = data.draw(st.integers(start, len(buffer)))
    native = candidates.token(allowed, limit=limit, boundary=boundary)
    python = candidates.token(allowed, limit=limit, boundary=boundary, native=False)
    assert native(buffer, start, end) == python(buffer, start, end)


@settings(max_examples=1000)
@given(st.data(), buffers, st.sampled_from(BOUNDARIES))
def test_fixed_answers_as_in_python(
    data: st.DataObject, buffer: bytes, boundary: frozenset[int]
) -> None:
    start = data.draw(st.integers(0, len(buffer)))
    end = data.draw(st.integers(start, len(buffer)))
    native = candidates.fixed(boundary)
    python = candidates.fixed(boundary, native=False)
    assert native(buffer, start, end) == python(buffer, start, end)


def test_bad_arguments_are_refused_not_read() -> None:
    check = candidates.token(ALNUM)
    with pytest.raises(IndexError):
        check(b"abc", 2, 9)
    with pytest.raises(IndexError):
        candidates.email()(b"a@b", -1, 2)
    with pytest.raises(ValueError, match="@"):
        candidates.email()(b"abc", 0, 3)
    with pytest.raises(TypeError):
        candidates.token(ALNUM)(b"abc", 0)
    with pytest.raises(TypeError, match="256-byte"):
        type(check)(b"short", b"", 3)
    with pytest.raises(ValueError, match="negative"):
        type(check)(bytes(256), bytes(256), -1)

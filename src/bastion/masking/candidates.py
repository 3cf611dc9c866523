"""From a Hyperscan candidate to the exact span to mask, or nothing.

This module owns the `confirm` functions detectors use: boundary rules (a candidate glued to a
longer word or number is not one; a JSON escape such as \\n before it is a boundary), widening
a minimal match over the rest of its token, keyword-anchored values (`password=...`), and the
per-kind checks that call `validators`. Each function reads a few bytes around the candidate in
the scan buffer, never past a NUL (the separator between values), and runs no regular
expression.

The commonest checks in free text, e-mail addresses and prefixed tokens, also exist in C
(`bastion.masking._confirm`): `email()`, `token()` and `fixed()` return the C check when it is
built and the Python one otherwise (or with `native=False`). The Python functions are the
reference; a property test holds the two to the same answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from bastion.masking import validators
from bastion.masking.validators import ALNUM, DIGITS, WORD, digits_of

try:
    from bastion.masking import _confirm
except ImportError:  # built by `pip install`; the Python checks below are the same
    _confirm = None  # type: ignore[assignment]

NATIVE_CONFIRM: Final = _confirm is not None

# Confirm a candidate: (buffer, start, end) -> the exact span to mask, or None. The buffer may
# hold several values separated by NUL bytes; no confirm function ever crosses a NUL.
Confirm = Callable[[bytes, int, int], tuple[int, int] | None]

_BACKSLASH: Final = 0x5C
_ESCAPE_LETTERS: Final = frozenset(b"nrtfbvu0/")


# -- boundaries ------------------------------------------------------------------------------


def _starts_word(buf: bytes, start: int, word: frozenset[int] = WORD) -> bool:
    """Nothing of the same token sits just before `start` (an escape such as \\n counts as
    whitespace: values often arrive JSON-encoded)."""
    if start == 0:
        return True
    previous = buf[start - 1]
    if previous not in word:
        return True
    return start >= 2 and buf[start - 2] == _BACKSLASH and previous in _ESCAPE_LETTERS


def _ends_word(buf: bytes, end: int, word: frozenset[int] = WORD) -> bool:
    return end >= len(buf) or buf[end] not in word


def _glued_before(buf: bytes, start: int) -> bool:
    """Digits just before `start`, joined by a dash, dot, comma, slash or colon: the span is
    part of a longer number, date, amount or identifier (a UUID, 12.4242..., 2024-...)."""
    return start >= 2 and buf[start - 1] in b"-.,/:" and buf[start - 2] in DIGITS


def _glued_after(buf: bytes, end: int) -> bool:
    return end + 1 < len(buf) and buf[end] in b"-.,/:" and buf[end + 1] in DIGITS


def _inside_number(buf: bytes, start: int, end: int) -> bool:
    return _glued_before(buf, start) or _glued_after(buf, end)


def _inside_dashed_number(buf: bytes, start: int, end: int) -> bool:
    """_inside_number for spans that carry their own separators (123-45-6789): a comma next
    to them separates list items (string_agg, CSV), it does not continue an amount."""
    before = start >= 2 and buf[start - 1] in b"-./:" and buf[start - 2] in DIGITS
    after = end + 1 < len(buf) and buf[end] in b"-./:" and buf[end + 1] in DIGITS
    return before or after


def _extend(buf: bytes, end: int, allowed: frozenset[int], limit: int) -> int:
    """Move `end` right over bytes in `allowed`, at most `limit` of them."""
    stop = min(len(buf), end + limit)
    while end < stop and buf[end] in allowed:
        end += 1
    return end


# -- e-mail ----------------------------------------------------------------------------------

_LOCAL_PART: Final = ALNUM | frozenset(b"._%+-_")
_LOCAL_LEADING_PUNCTUATION: Final = frozenset(b"._%+-")
_DOMAIN_PART: Final = ALNUM | frozenset(b".-")


_LOCAL_PART_BYTES: Final = bytes(sorted(_LOCAL_PART))
_DOMAIN_PART_BYTES: Final = bytes(sorted(_DOMAIN_PART))


def confirm_email(buf: bytes, start: int, end: int) -> tuple[int, int] | None:
    at = buf.index(b"@", start, end)
    # The local part: the bytes of its alphabet just before `@`, at most 64 (rstrip runs in C).
    before = buf[max(0, at - 64) : at]
    left = at - (len(before) - len(before.rstrip(_LOCAL_PART_BYTES)))
    if left >= 1 and buf[left - 1] == _BACKSLASH:  # \nalice@...: the n belongs to the escape
        left += 1
    ellipsis = buf.rfind(b"..", left, at)  # "see...alice@": the address starts after it
    if ellipsis >= 0:
        left = ellipsis + 2
    while left < at and buf[left] in _LOCAL_LEADING_PUNCTUATION:  # "--bob@"
        left += 1
    after = buf[at + 1 : at + 254]
    right = at + 1 + len(after) - len(after.lstrip(_DOMAIN_PART_BYTES))
    while right > at + 1 and buf[right - 1] in b".-":
        right -= 1
    if not validators.email_valid(buf[left:at], buf[at + 1 : right]):
        return None
    return left, right


def email(*, native: bool = True) -> Confirm:
    """The e-mail check: `confirm_email`, in C when that is built (and `native`)."""
    if native and _confirm is not None:
        return _confirm.email
    return confirm_email


def _table(allowed: frozenset[int]) -> bytes:
    """A set of bytes as the 256-byte table the C checks take."""
    return bytes(1 if byte in allowed else 0 for byte in range(256))


# -- payment cards ---------------------------------------------------------------------------

_CARD_GROUPINGS: Final = frozenset(
    {(4, 4, 4, 4), (4, 6, 5), (4, 6, 4), (4, 4, 4, 4, 3), (4, 4, 4, 4, 2), (4, 4, 4, 4, 1)}
    | {(4, 4, 4, 1), (4, 4, 4, 2), (4, 4, 4, 3), (4, 4, 5)}
)


def _card_candidate(span: bytes) -> bool:
    digits = digits_of(span)
    if len(digits) != len(span):
        separators = set(span.translate(None, validators.DIGIT_BYTES))
        if len(separators) > 1:
            return False
        groups = tuple(len(group) for group in span.split(bytes(separators)))
        if groups not in _CARD_GROUPINGS:
            return False
    return validators.card_number_valid(digits)


def confirm_card(buf: bytes, start: int, end: int) -> tuple[int, int] | None:
    if _glued_after(buf, end):
        return None
    glued = _glued_before(buf, start) or (start > 0 and buf[start - 1] == 0x2B)  # +: a phone
    if not glued and _starts_word(buf, start) and _card_candidate(buf[start:end]):
        return start, end
    # The leftmost start may belong to a longer digit sequence; a card can begin at any later
    # group (`Order 1234 4242 4242 4242 4242`, `SSN 001-01-0001 4000000000006`).
    for position in range(start + 1, end - 12):
        if buf[position - 1] in b" -" and _card_candidate(buf[position:end]):
            return position, end
    return None


# -- US social security numbers ----------------------------------------------------------------


def confirm_ssn(buf: bytes, start: int, end: int) -> tuple[int, int] | None:
    if not _starts_word(buf, start) or _inside_dashed_number(buf, start, end):
        return None
    if start > 0 and buf[start - 1] in b"+-.#":
        return None
    span = buf[start:end]
    if not validators.ssn_valid(span[0:3], span[4:6], span[7:11]):
        return None
    return start, end


# -- phone numbers ---------------------------------------------------------------------------

_DIGIT_RUN: Final = ALNUM | frozenset(b"+-.")


def _phone_shape(span: bytes) -> bool:
    """Separators are single (or `) `), parentheses balanced and around digits only."""
    opening = span.find(b"(")
    if opening >= 0:
        if span.count(b"(") > 1 or span.count(b")") != 1 or span.index(b")") < opening:
            return False
    elif b")" in span:
        return False
    return not any(double in span for double in _DOUBLE_SEPARATORS)


_DOUBLE_SEPARATORS: Final = (b"  ", b"--", b"..", b"-.", b".-", b"()", b" -", b"- ", b" .", b". ")


def confirm_international_phone(buf: bytes, start: int, end: int) -> tuple[int, int] | None:
    if start > 0 and (buf[start - 1] in ALNUM or buf[start - 1] in b")+"):
        return None
    span = buf[start:end]
    digits = digits_of(span)
    if not 8 <= len(digits) <= 15 or not _phone_shape(span[1:]):
        return None
    if not _ends_word(buf, end, ALNUM):
        return None
    if end + 1 < len(buf) and buf[end] in b".-/" and buf[end + 1] in DIGITS:
        return None
    return start, end


def confirm_nanp_phone(buf: bytes, start: int, end: int) -> tuple[int, int] | None:
    # A leading "1-", "1 " or "1." is the country code: it belongs to the number.
    if (
        start >= 2
        and buf[start - 1] in b" -."
        and buf[start - 2] == 0x31
        and (start == 2 or buf[start - 3] not in _DIGIT_RUN)
    ):
        start -= 2
    elif (
        _inside_number(buf, start, end)
        or not _starts_word(buf, start, ALNUM)
        or (start > 0 and buf[start - 1] in b"+_")
    ):
        return None
    if _glued_after(buf, end):
        return None
    span = buf[start:end]
    if not _phone_shape(span) or (b"(" in span) != (b")" in span):
        return None
    digits = digits_of(span)
    if not validators.nanp_valid(digits[-10:]):
        return None
    return start, end


def confirm_national_phone(buf: bytes, start: int, end: int) -> tuple[int, int] | None:
    if _inside_number(buf, start, end) or not _starts_word(buf, start, ALNUM):
        return None
    if start > 0 and buf[start - 1] in b"+_":
        return None
    span = buf[start:end]
    digits = digits_of(span)
    if not 10 <= len(digits) <= 11 or not _phone_shape(span):
        return None
    return start, end


# -- IBAN ------------------------------------------------------------------------------------

_UPPER_ALNUM: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def confirm_iban(buf: bytes, start: int, end: int) -> tuple[int, int] | None:
    if not _starts_word(buf, start, ALNUM):
        return None
    length = validators.IBAN_LENGTHS.get(buf[start : start + 2])
    if length is None:
        return None
    collected = bytearray()
    position = start
    grouped = buf[start + 4 : start + 5] == b" "
    while len(collected) < length and position < len(buf):
        char = buf[position]
        if char in _UPPER_ALNUM:
            collected.append(char)
            position += 1
        elif grouped and char == 0x20 and len(collected) % 4 == 0 and collected:
            position += 1
        else:
            break
    if len(collected) != length or not _ends_word(buf, position, ALNUM):
        return None
    if not validators.iban_valid(bytes(collected)):
        return None
    return start, position


# -- tokens ----------------------------------------------------------------------------------

BASE64URL: Final = ALNUM | frozenset(b"_-")
BASE64: Final = ALNUM | frozenset(b"+/=")


def confirm_jwt(buf: bytes, start: int, end: int) -> tuple[int, int] | None:
    if not _starts_word(buf, start, BASE64URL):
        return None
    header_end = buf.index(b".", start, end)
    if not validators.jwt_header_valid(buf[start:header_end]):
        return None
    return start, _extend(buf, end, BASE64URL, 8192)


def token(
    allowed: frozenset[int],
    *,
    limit: int = 256,
    boundary: frozenset[int] = ALNUM,
    check: Callable[[bytes], bool] | None = None,
    native: bool = True,
) -> Confirm:
    """Confirm a prefixed token: a word boundary before it, then as many `allowed` bytes as
    follow (the pattern matched only the minimum length). In C when that is built, `native`
    and there is no `check`."""
    if native and check is None and _confirm is not None:
        return _confirm.Token(_table(allowed), _table(boundary), limit)

    def confirm(buf: bytes, start: int, end: int) -> tuple[int, int] | None:
        if not _starts_word(buf, start, boundary):
            return None
        end = _extend(buf, end, allowed, limit)
        if check is not None and not check(buf[start:end]):
            return None
        return start, end

    return confirm


def fixed(boundary: frozenset[int] = ALNUM, *, native: bool = True) -> Confirm:
    """Confirm a fixed-length token that must stand alone (in C when built and `native`)."""
    if native and _confirm is not None:
        table = _table(boundary)
        return _confirm.Token(table, table, 0, fixed=True)

    def confirm(buf: bytes, start: int, end: int) -> tuple[int, int] | None:
        if _starts_word(buf, start, boundary) and _ends_word(buf, end, boundary):
            return start, end
        return None

    return confirm


def looks_random(token: bytes) -> bool:
    """A generated key is long and mixes digits with both letter cases; kebab-case words
    (`sk-learn-compatible-estimators`) do not."""
    return (
        len(token) >= 40
        and any(char in DIGITS for char in token)
        and any(0x41 <= char <= 0x5A for char in token)
        and any(0x61 <= char <= 0x7A for char in token)
    )


def confirm_private_key(buf: bytes, start: int, end: int) -> tuple[int, int] | None:
    """The key body between the BEGIN and END lines (to the end of the value when END is
    missing: a truncated key is still a secret)."""
    value_end = buf.find(b"\x00", end)
    if value_end < 0:
        value_end = len(buf)
    footer = buf.find(b"-----END ", end, value_end)
    body_end = footer if footer >= 0 else value_end
    if body_end <= end:
        return None
    return end, body_end


def after_keyword(length: int | None, *, min_length: int = 3) -> Confirm:
    """Confirm `keyword = value`: the span is the value only. With `length` the value is the
    last `length` bytes of the match; otherwise the match ends one byte into the value, which
    runs to the closing quote when quoted, else to whitespace or punctuation."""

    def confirm(buf: bytes, start: int, end: int) -> tuple[int, int] | None:
        if start > 0 and buf[start - 1] in ALNUM:
            return None
        if length is not None:
            if not _ends_word(buf, end, BASE64):
                return None
            return end - length, end
        value_start = end - 1
        quote = buf[value_start - 1]
        delimiters = _QUOTED_VALUE_END.get(quote, _VALUE_END)
        value_end = value_start
        limit = min(len(buf), value_start + 512)
        while value_end < limit and buf[value_end] not in delimiters:
            value_end += 1
        value = buf[value_start:value_end].rstrip(b". ")
        if len(value) < min_length or value.strip(b"*") == b"" or value.lower() in _PLACEHOLDERS:
            return None
        return value_start, value_start + len(value)

    return confirm


# A value ends at whitespace, quotes, punctuation, NUL, or a backslash (an escaped quote or
# newline in JSON); a quoted value ends at its closing quote.
_VALUE_END: Final = frozenset(b" \t\r\n\"'`,;&<>(){}[]\x00\\")
_QUOTED_VALUE_END: Final = {quote: frozenset(bytes([quote]) + b"\x00\\\n") for quote in b"\"'"}
_PLACEHOLDERS: Final = frozenset(
    {b"null", b"none", b"true", b"false", b"undefined", b"changeme", b"redacted", b"xxx"}
)


def confirm_url_password(buf: bytes, start: int, end: int) -> tuple[int, int] | None:
    """scheme://user:password@host: the span is the password (the match starts at `://`)."""
    colon = buf.find(b":", start + 3, end)
    if colon < 0 or end - colon < 3 or end - colon > 256:
        return None
    return colon + 1, end - 1

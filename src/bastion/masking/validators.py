"""Precise checks that turn a candidate match into a finding: Luhn, SSN ranges, IBAN mod-97,
JWT headers, e-mail syntax.

The bulk pass (`bulk.py`) only says "something shaped like a card number is here"; these
functions decide whether it really is one. They look at a few dozen bytes at most, never run a
regular expression, and have no side effects.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Final

DIGITS: Final = frozenset(b"0123456789")
DIGIT_BYTES: Final = b"0123456789"
_ALNUM_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
ALNUM: Final = frozenset(_ALNUM_BYTES)
WORD: Final = frozenset(_ALNUM_BYTES + b"_")


def luhn_valid(digits: bytes) -> bool:
    """The Luhn (mod 10) check over ASCII digits."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = char - 48
        if position % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _card_lengths(digits: bytes) -> range | tuple[int, ...]:
    """Lengths the issuer identified by the leading digits uses; empty when none matches."""
    first = digits[0]
    two = int(digits[:2])
    four = int(digits[:4])
    if first == 0x34:  # 4: Visa
        return (13, 16, 19)
    if 51 <= two <= 55 or 2221 <= four <= 2720:  # Mastercard
        return (16,)
    if two in (34, 37):  # American Express
        return (15,)
    if 2200 <= four <= 2204:  # Mir
        return range(16, 20)
    if 3528 <= four <= 3589:  # JCB
        return range(16, 20)
    if 300 <= int(digits[:3]) <= 305 or four == 3095 or two in (36, 38, 39):  # Diners
        return range(14, 20)
    if two == 50 or 56 <= two <= 59:  # Maestro
        return range(13, 20)
    if first == 0x36:  # 6: Discover, UnionPay, Maestro, RuPay
        return range(16, 20)
    if two in (81, 82) or four == 9792:  # UnionPay, RuPay, Troy
        return range(16, 20)
    return ()


def card_number_valid(digits: bytes) -> bool:
    """A payment card number: a known issuer prefix and length, and a Luhn check digit."""
    if not 13 <= len(digits) <= 19 or not digits.isdigit():
        return False
    if digits.count(digits[:1]) == len(digits):
        return False
    return len(digits) in _card_lengths(digits) and luhn_valid(digits)


def ssn_valid(area: bytes, group: bytes, serial: bytes) -> bool:
    """A US social security number that could have been issued: area 001-899 except 666,
    group 01-99, serial 0001-9999."""
    area_number = int(area)
    return (
        0 < area_number < 900
        and area_number != 666
        and int(group) != 0
        and int(serial) != 0
        # The numbers the SSA published in advertising and that were widely misused.
        and (area, group, serial) not in ((b"078", b"05", b"1120"), (b"219", b"09", b"9999"))
    )


# Total IBAN length per country (SWIFT IBAN registry).
IBAN_LENGTHS: Final[dict[bytes, int]] = {
    b"AD": 24,
    b"AE": 23,
    b"AL": 28,
    b"AT": 20,
    b"AZ": 28,
    b"BA": 20,
    b"BE": 16,
    b"BG": 22,
    b"BH": 22,
    b"BI": 27,
    b"BR": 29,
    b"BY": 28,
    b"CH": 21,
    b"CR": 22,
    b"CY": 28,
    b"CZ": 24,
    b"DE": 22,
    b"DJ": 27,
    b"DK": 18,
    b"DO": 28,
    b"EE": 20,
    b"EG": 29,
    b"ES": 24,
    b"FI": 18,
    b"FK": 18,
    b"FO": 18,
    b"FR": 27,
    b"GB": 22,
    b"GE": 22,
    b"GI": 23,
    b"GL": 18,
    b"GR": 27,
    b"GT": 28,
    b"HN": 28,
    b"HR": 21,
    b"HU": 28,
    b"IE": 22,
    b"IL": 23,
    b"IQ": 23,
    b"IS": 26,
    b"IT": 27,
    b"JO": 30,
    b"KW": 30,
    b"KZ": 20,
    b"LB": 28,
    b"LC": 32,
    b"LI": 21,
    b"LT": 20,
    b"LU": 20,
    b"LV": 21,
    b"LY": 25,
    b"MC": 27,
    b"MD": 24,
    b"ME": 22,
    b"MK": 19,
    b"MN": 20,
    b"MR": 27,
    b"MT": 31,
    b"MU": 30,
    b"NI": 28,
    b"NL": 18,
    b"NO": 15,
    b"OM": 23,
    b"PK": 24,
    b"PL": 28,
    b"PS": 29,
    b"PT": 25,
    b"QA": 29,
    b"RO": 24,
    b"RS": 22,
    b"RU": 33,
    b"SA": 24,
    b"SC": 31,
    b"SD": 18,
    b"SE": 24,
    b"SI": 19,
    b"SK": 24,
    b"SM": 27,
    b"SO": 23,
    b"ST": 25,
    b"SV": 28,
    b"TL": 23,
    b"TN": 24,
    b"TR": 26,
    b"UA": 29,
    b"VA": 22,
    b"VG": 24,
    b"XK": 20,
    b"YE": 30,
}


def iban_valid(iban: bytes) -> bool:
    """An IBAN without spaces: known country, that country's length, mod-97 remainder 1."""
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban[2:4].isdigit():
        return False
    if not iban.isalnum() or not iban.isascii() or iban != iban.upper():
        return False
    rearranged = iban[4:] + iban[:4]
    number = "".join(str(int(chr(char), 36)) for char in rearranged)
    return int(number) % 97 == 1


def jwt_header_valid(segment: bytes) -> bool:
    """The first segment of a JWT: base64url of a JSON object naming its algorithm."""
    if len(segment) > 2048:
        return False
    try:
        decoded = base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))
        header = json.loads(decoded)
    except (binascii.Error, ValueError):
        return False
    return isinstance(header, dict) and isinstance(header.get("alg"), str)


_LOCAL_BYTES: Final = _ALNUM_BYTES + b"._%+-_"
_DOMAIN_BYTES: Final = _ALNUM_BYTES + b"-"


def only(data: bytes, allowed: bytes) -> bool:
    """Whether every byte of `data` is one of `allowed` (at C speed)."""
    return not data.translate(None, allowed)


def digits_of(data: bytes) -> bytes:
    """The ASCII digits of `data`, in order."""
    return data.translate(None, _NOT_DIGITS)


_NOT_DIGITS: Final = bytes(byte for byte in range(256) if byte not in DIGITS)


def email_valid(local: bytes, domain: bytes) -> bool:
    """A sane address: a 1-64 byte local part without leading, trailing or doubled dots, and a
    domain of LDH labels ending in an alphabetic (or IDN `xn--`) top-level label."""
    if not 0 < len(local) <= 64 or not 3 < len(domain) <= 253:
        return False
    if local[0] == 0x2E or local[-1] == 0x2E or b".." in local:
        return False
    if not only(local, _LOCAL_BYTES):
        return False
    labels = domain.split(b".")
    if len(labels) < 2:
        return False
    for label in labels:
        if not 0 < len(label) <= 63 or label[0] == 0x2D or label[-1] == 0x2D:
            return False
        if not only(label, _DOMAIN_BYTES):
            return False
    tld = labels[-1]
    return (len(tld) >= 2 and tld.isalpha()) or tld.lower().startswith(b"xn--")


def nanp_valid(digits: bytes) -> bool:
    """A ten-digit North American number: area code and exchange start with 2-9."""
    return len(digits) == 10 and digits[0] >= 0x32 and digits[3] >= 0x32

"""What the `partial` strategy keeps of a text value, class by class.

This module owns the rules on strings: an e-mail keeps its domain (`***@example.com`), a card
or account number its last four digits with its separators (`****-****-****-4242`), a phone its
last two digits, an IBAN its country and last four characters, a name its initials
(`A** G*****`), a birth date its year, an IP address its network, a postal code its first two
characters; other classes keep the last four letters or digits of long values. Never more than
half of a value's letters and digits stays visible. Type-specific forms (integers, dates,
inet) are in `strategies.py`.
"""

from __future__ import annotations

import ipaddress

from bastion.masking.classes import CLASS_SPECS, SensitiveClass

MASK_CHAR = "*"
_GENERIC_KEEP_LAST = 4
_GENERIC_MIN_LENGTH = 12


def keep_ends(text: str, keep_first: int, keep_last: int) -> str:
    """Mask letters and digits except the first `keep_first` and last `keep_last` of them;
    separators and punctuation stay. At most half of them stays visible."""
    if text.isalnum():  # the common case (a bare card or account number): slices, no loop
        first, last = _kept(len(text), keep_first, keep_last)
        return text[:first] + MASK_CHAR * (len(text) - first - last) + text[len(text) - last :]
    positions = [index for index, char in enumerate(text) if char.isalnum()]
    keep_first, keep_last = _kept(len(positions), keep_first, keep_last)
    masked = set(positions[keep_first : len(positions) - keep_last])
    return "".join(MASK_CHAR if index in masked else char for index, char in enumerate(text))


def _kept(count: int, keep_first: int, keep_last: int) -> tuple[int, int]:
    """keep_ends' rule for `count` letters and digits: at most half of them stay visible."""
    while keep_first + keep_last > count // 2 and (keep_first or keep_last):
        if keep_last >= keep_first:
            keep_last -= 1
        else:
            keep_first -= 1
    return keep_first, keep_last


def _email(text: str) -> str | None:
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        return None
    return "***@" + domain


def _person_name(text: str) -> str:
    return " ".join(
        word[:1] + MASK_CHAR * (len(word) - 1) if word else word for word in text.split(" ")
    )


def _birth_date(text: str) -> str:
    if len(text) >= 10 and text[4] == "-" and text[:4].isdigit():
        return text[:4] + "".join(MASK_CHAR if char.isalnum() else char for char in text[4:])
    return keep_ends(text, 0, 0)


def _ip_address(text: str) -> str | None:
    address, _, _ = text.strip().partition("/")
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return None
    kept_bits = 16 if parsed.version == 4 else 48
    network = ipaddress.ip_network(f"{parsed}/{kept_bits}", strict=False)
    return str(network.network_address)


def partial_text(sensitive_class: SensitiveClass, text: str) -> str:
    """The partial form of a text value of `sensitive_class`."""
    if sensitive_class is SensitiveClass.EMAIL:
        kept = _email(text)
        if kept is not None:
            return kept
    elif sensitive_class is SensitiveClass.PERSON_NAME:
        return _person_name(text)
    elif sensitive_class is SensitiveClass.BIRTH_DATE:
        return _birth_date(text)
    elif sensitive_class is SensitiveClass.IP_ADDRESS:
        network = _ip_address(text)
        if network is not None:
            return network
    spec = CLASS_SPECS[sensitive_class]
    keep_first, keep_last = spec.keep_first, spec.keep_last
    if not keep_first and not keep_last:
        alnum = sum(char.isalnum() for char in text)
        keep_last = _GENERIC_KEEP_LAST if alnum >= _GENERIC_MIN_LENGTH else 0
    return keep_ends(text, keep_first, keep_last)

"""The sensitive classes Bastion knows, the masking strategies, and each class's defaults.

This module owns the vocabulary shared by every other masking module: `SensitiveClass` (what a
value is), `Strategy` (how it leaves Bastion), and `CLASS_SPECS`, the default strategy of each
class and how much `partial` may keep visible. It holds data only: no detection, no rewriting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType


class SensitiveClass(StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    CARD_NUMBER = "card_number"
    CARD_SECURITY_CODE = "card_security_code"
    SSN = "ssn"
    NATIONAL_ID = "national_id"
    TAX_ID = "tax_id"
    IBAN = "iban"
    BANK_ACCOUNT = "bank_account"
    PASSWORD = "password"
    SECRET = "secret"
    TOKEN = "token"
    API_KEY = "api_key"
    PRIVATE_KEY = "private_key"
    JWT = "jwt"
    BIRTH_DATE = "birth_date"
    ADDRESS = "address"
    POSTAL_CODE = "postal_code"
    PERSON_NAME = "person_name"
    IP_ADDRESS = "ip_address"


class Strategy(StrEnum):
    """How a sensitive value is rewritten; every result stays valid for the column's type."""

    REDACT = "redact"  # a fixed placeholder: ****, 0, 1900-01-01, the nil UUID, 0.0.0.0 ...
    PARTIAL = "partial"  # keep a little: the e-mail domain, a card's last four digits ...
    HASH = "hash"  # keyed HMAC-SHA256 token: same input, same output, so joins still work
    NULL = "null"  # SQL NULL


@dataclass(frozen=True, slots=True)
class ClassSpec:
    """Defaults for one class.

    `keep_last` is how many letters or digits `partial` leaves visible at the end of the value
    (0: none), `keep_first` at its start. `rank` orders classes when two detections overlap in
    one value: the lower rank wins, so a key is never reported as the phone number inside it.
    """

    sensitive_class: SensitiveClass
    default: Strategy
    description: str
    keep_last: int = 0
    keep_first: int = 0
    rank: int = 50


_C = SensitiveClass
_S = Strategy

CLASS_SPECS: Mapping[SensitiveClass, ClassSpec] = MappingProxyType(
    {
        spec.sensitive_class: spec
        for spec in (
            ClassSpec(_C.PRIVATE_KEY, _S.REDACT, "PEM private key block", rank=0),
            ClassSpec(_C.JWT, _S.REDACT, "JSON Web Token", rank=8),  # more precise than "token"
            ClassSpec(_C.API_KEY, _S.REDACT, "cloud or SaaS API key", rank=10),
            ClassSpec(_C.TOKEN, _S.REDACT, "access, refresh or session token", rank=10),
            ClassSpec(_C.SECRET, _S.REDACT, "secret, signing key or recovery code", rank=10),
            ClassSpec(_C.PASSWORD, _S.REDACT, "password, passphrase or its hash", rank=10),
            ClassSpec(
                _C.CARD_NUMBER, _S.PARTIAL, "payment card number (PAN)", keep_last=4, rank=20
            ),
            ClassSpec(_C.CARD_SECURITY_CODE, _S.REDACT, "card verification code", rank=20),
            ClassSpec(
                _C.IBAN,
                _S.PARTIAL,
                "international bank account number (partial keeps country and last four)",
                keep_last=4,
                keep_first=2,
                rank=25,
            ),
            ClassSpec(_C.BANK_ACCOUNT, _S.PARTIAL, "bank account number", keep_last=4, rank=25),
            ClassSpec(_C.SSN, _S.REDACT, "US social security number", keep_last=4, rank=30),
            ClassSpec(
                _C.NATIONAL_ID, _S.REDACT, "national identity or passport number", keep_last=4
            ),
            ClassSpec(_C.TAX_ID, _S.REDACT, "tax or VAT identification number", keep_last=4),
            ClassSpec(_C.EMAIL, _S.PARTIAL, "e-mail address (partial keeps the domain)", rank=40),
            ClassSpec(_C.PHONE, _S.PARTIAL, "telephone number", keep_last=2, rank=45),
            ClassSpec(_C.BIRTH_DATE, _S.REDACT, "date of birth (partial keeps the year)"),
            ClassSpec(_C.ADDRESS, _S.REDACT, "postal or street address"),
            ClassSpec(_C.POSTAL_CODE, _S.REDACT, "postal or ZIP code", keep_first=2),
            ClassSpec(_C.PERSON_NAME, _S.REDACT, "a person's name (partial keeps initials)"),
            ClassSpec(_C.IP_ADDRESS, _S.PARTIAL, "IP address (partial keeps the network)"),
        )
    }
)


def parse_class(name: str) -> SensitiveClass:
    """The class called `name` (as written in configuration); ValueError names the choices."""
    try:
        return SensitiveClass(name.strip().lower())
    except ValueError:
        choices = ", ".join(c.value for c in SensitiveClass)
        raise ValueError(f"unknown sensitive class {name!r}; known classes: {choices}") from None


def parse_strategy(name: str) -> Strategy:
    try:
        return Strategy(name.strip().lower())
    except ValueError:
        choices = ", ".join(s.value for s in Strategy)
        raise ValueError(f"unknown masking strategy {name!r}; known: {choices}") from None


def default_strategy(sensitive_class: SensitiveClass) -> Strategy:
    return CLASS_SPECS[sensitive_class].default

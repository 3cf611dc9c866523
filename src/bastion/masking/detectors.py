"""The built-in content detectors: one Hyperscan pattern and one precise confirmation each.

This module owns what Bastion looks for inside values: e-mail addresses, payment card numbers,
US social security numbers, phone numbers, IBANs, JWTs, private key blocks, cloud and SaaS API
keys, and credentials written into text (`password=...`, `postgres://user:pass@host`). Each
`Detector` pairs a literal-anchored pattern for the bulk pass (`bulk.py`: cheap, may say "maybe")
with a `confirm` function that runs only on the candidate span and returns the exact bytes to
mask, or None. Patterns are written so each occurrence reports once (fixed length or ending on
a delimiter); `confirm` then widens the span over the rest of the token.

Decided on purpose:
- Bare nine-digit numbers are not SSNs and bare ten-digit numbers are not phone numbers: without
  their usual separators every order id would be one. Name rules catch such columns.
- A 40-character AWS secret access key is only recognised next to a keyword naming it
  (`aws_secret_access_key = ...`): on its own it is indistinguishable from a SHA-1 digest.
- Stripe publishable keys (`pk_live_`) are public by design and left alone.
- IBANs are recognised in upper case, as printed; a digit run that passes an issuer prefix and
  the Luhn check is a card number even when someone meant it as an integer (fail closed).
- A candidate inside a longer word or number (`x4242...`, `12-345-67-8901`, a UUID) is rejected;
  a JSON or C escape just before it (`\\n4242...`) counts as a boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bastion.masking import candidates
from bastion.masking.candidates import Confirm
from bastion.masking.classes import SensitiveClass
from bastion.masking.validators import ALNUM


@dataclass(frozen=True, slots=True)
class Detector:
    """One kind of sensitive value recognisable by its content.

    `pattern` is a Hyperscan expression (bytes); `kept_prefixes` are literal prefixes that only
    name the kind of secret (`ghp_`, `sk_live_`) and may stay visible when the rest is masked.
    `examples` are synthetic values it must find (the tests check every one).
    """

    name: str
    sensitive_class: SensitiveClass
    pattern: bytes
    confirm: Confirm
    caseless: bool = False
    kept_prefixes: tuple[bytes, ...] = ()
    examples: tuple[str, ...] = ()


# -- the table -------------------------------------------------------------------------------

_C = SensitiveClass
_ALNUM_UNDERSCORE = ALNUM | frozenset(b"_")
_SLACK_CHARS = ALNUM | frozenset(b"-")

DEFAULT_DETECTORS: Final[tuple[Detector, ...]] = (
    Detector(
        "email",
        _C.EMAIL,
        # From the `@` on: confirm_email reads the local part leftwards itself, and a pattern
        # that starts with a literal scans about four times faster than one starting with a
        # class of 66 bytes (it was the costliest of all the detectors).
        rb"@[A-Za-z0-9][A-Za-z0-9.-]*\.[A-Za-z]{2}",
        candidates.email(),
        examples=("ava.garcia1@example.com", "first.last+tag@mail.example.org"),
    ),
    Detector(
        "card_number",
        _C.CARD_NUMBER,
        rb"\d(?:[ -]?\d){12,18}\b",
        candidates.confirm_card,
        examples=("4111 1111 1111 1111", "5555-5555-5555-4444", "378282246310005"),
    ),
    Detector(
        "us_ssn",
        _C.SSN,
        rb"\d{3}-\d{2}-\d{4}\b|\d{3} \d{2} \d{4}\b",
        candidates.confirm_ssn,
        examples=("123-45-6789", "078 15 1121"),
    ),
    Detector(
        "phone_international",
        _C.PHONE,
        rb"\+[1-9][0-9 ().-]{6,22}\d\b",
        candidates.confirm_international_phone,
        examples=("+1 (415) 555-0134", "+44 20 7946 0958", "+33123456789"),
    ),
    Detector(
        "phone_nanp",
        _C.PHONE,
        rb"\(?\d{3}\)?[ .-]?\d{3}[ .-]\d{4}\b",
        candidates.confirm_nanp_phone,
        examples=("(212) 555-0187", "415.555.0134", "1-800-555-0199"),
    ),
    Detector(
        "phone_national",
        _C.PHONE,
        rb"0[1-9](?:[ .]\d{2}){4}\b|0\d{2,4}[ -]\d{3,4}[ -]?\d{3,4}\b",
        candidates.confirm_national_phone,
        examples=("01 23 45 67 89", "020 7946 0958"),
    ),
    Detector(
        "iban",
        _C.IBAN,
        rb"[A-Z]{2}\d{2} ?[A-Z0-9]{4}",
        candidates.confirm_iban,
        examples=("DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432"),
    ),
    Detector(
        "jwt",
        _C.JWT,
        rb"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.",
        candidates.confirm_jwt,
        examples=(
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
            "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        ),
    ),
    Detector(
        "private_key",
        _C.PRIVATE_KEY,
        rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----",
        candidates.confirm_private_key,
        examples=(
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx\n-----END RSA PRIVATE KEY-----",
        ),
    ),
    Detector(
        "aws_access_key_id",
        _C.API_KEY,
        rb"(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}",
        candidates.fixed(),
        kept_prefixes=(b"AKIA", b"ASIA", b"ABIA", b"ACCA"),
        examples=("AKIAIOSFODNN7EXAMPLE",),
    ),
    Detector(
        "aws_secret_access_key",
        _C.SECRET,
        rb"aws_?secret_?(?:access_?)?key[\"']?\s*(?:=|:|=>)\s*[\"']?[A-Za-z0-9/+=]{40}",
        candidates.after_keyword(40),
        caseless=True,
        examples=("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",),
    ),
    Detector(
        "github_token",
        _C.TOKEN,
        rb"gh[pousr]_[A-Za-z0-9]{36}",
        candidates.token(ALNUM),
        kept_prefixes=(b"ghp_", b"gho_", b"ghu_", b"ghs_", b"ghr_"),
        examples=("ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",),
    ),
    Detector(
        "github_fine_grained_token",
        _C.TOKEN,
        rb"github_pat_[A-Za-z0-9_]{22}",
        candidates.token(_ALNUM_UNDERSCORE),
        kept_prefixes=(b"github_pat_",),
        examples=("github_pat_11ABCDEFG0123456789abc_" + "x" * 59,),
    ),
    Detector(
        "gitlab_token",
        _C.TOKEN,
        rb"glpat-[A-Za-z0-9_-]{20}",
        candidates.token(candidates.BASE64URL),
        kept_prefixes=(b"glpat-",),
        examples=("glpat-" + "Ab3dE6gH9jK2mN5pQ8sT",),
    ),
    Detector(
        "stripe_secret_key",
        _C.API_KEY,
        rb"[rs]k_(?:live|test)_[A-Za-z0-9]{16}",
        candidates.token(ALNUM),
        kept_prefixes=(b"sk_live_", b"sk_test_", b"rk_live_", b"rk_test_"),
        examples=("sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",),
    ),
    Detector(
        "stripe_webhook_secret",
        _C.SECRET,
        rb"whsec_[A-Za-z0-9]{24}",
        candidates.token(ALNUM),
        kept_prefixes=(b"whsec_",),
        examples=("whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",),
    ),
    Detector(
        "slack_token",
        _C.TOKEN,
        rb"xox[abposr]-[A-Za-z0-9-]{10}|xapp-\d-[A-Za-z0-9-]{10}",
        candidates.token(_SLACK_CHARS),
        kept_prefixes=(b"xoxa-", b"xoxb-", b"xoxp-", b"xoxo-", b"xoxs-", b"xoxr-", b"xapp-"),
        examples=("xoxb-" + "12345678901-123456789012-AbCdEfGhIjKlMnOpQrStUvWx",),
    ),
    Detector(
        "slack_webhook",
        _C.SECRET,
        rb"hooks\.slack\.com/services/[A-Za-z0-9]{8}",
        candidates.token(ALNUM | frozenset(b"/"), boundary=frozenset()),
        kept_prefixes=(b"hooks.slack.com/services/",),
        examples=("https://hooks.slack.com/services/T0000AAAA/B0000BBBB/XXXXXXXXXXXXXXXXXXXXXXXX",),
    ),
    Detector(
        "google_api_key",
        _C.API_KEY,
        rb"AIza[0-9A-Za-z_-]{35}",
        candidates.fixed(candidates.BASE64URL),
        kept_prefixes=(b"AIza",),
        examples=("AIza" + "SyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW",),
    ),
    Detector(
        "openai_style_key",
        _C.API_KEY,
        rb"sk-(?:proj-|svcacct-|admin-|ant-)?[A-Za-z0-9_-]{20}",
        candidates.token(
            candidates.BASE64URL, boundary=candidates.BASE64URL, check=candidates.looks_random
        ),
        kept_prefixes=(b"sk-proj-", b"sk-svcacct-", b"sk-admin-", b"sk-ant-", b"sk-"),
        examples=("sk-proj-" + "Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56Qr78St90Uv12",),
    ),
    Detector(
        "sendgrid_key",
        _C.API_KEY,
        rb"SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}",
        candidates.fixed(candidates.BASE64URL),
        kept_prefixes=(b"SG.",),
        examples=("SG." + "a" * 22 + "." + "B" * 43,),
    ),
    Detector(
        "twilio_api_key",
        _C.API_KEY,
        rb"SK[0-9a-fA-F]{32}",
        candidates.fixed(),
        kept_prefixes=(b"SK",),
        examples=("SK" + "0123456789abcdef" * 2,),
    ),
    Detector(
        "npm_token",
        _C.TOKEN,
        rb"npm_[A-Za-z0-9]{36}",
        candidates.fixed(),
        kept_prefixes=(b"npm_",),
        examples=("npm_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",),
    ),
    Detector(
        "pypi_token",
        _C.TOKEN,
        rb"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{30}",
        candidates.token(candidates.BASE64URL),
        kept_prefixes=(b"pypi-",),
        examples=("pypi-AgEIcHlwaS5vcmc" + "CJDk2ZjU3YjRkLTk4ZWItNDk0Ni04MzE",),
    ),
    Detector(
        "shopify_token",
        _C.TOKEN,
        rb"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}",
        candidates.fixed(),
        kept_prefixes=(b"shpat_", b"shpca_", b"shppa_", b"shpss_"),
        examples=("shpat_" + "0123456789abcdef" * 2,),
    ),
    Detector(
        "digitalocean_token",
        _C.TOKEN,
        rb"do[opr]_v1_[a-f0-9]{64}",
        candidates.fixed(),
        kept_prefixes=(b"dop_v1_", b"doo_v1_", b"dor_v1_"),
        examples=("dop_v1_" + "0123456789abcdef" * 4,),
    ),
    Detector(
        "azure_storage_key",
        _C.SECRET,
        rb"AccountKey=[A-Za-z0-9+/]{86}==",
        candidates.after_keyword(88),
        examples=("DefaultEndpointsProtocol=https;AccountKey=" + "A" * 86 + "==;",),
    ),
    Detector(
        "bearer_token",
        _C.TOKEN,
        rb"bearer\s+[A-Za-z0-9._~+/-]",
        candidates.after_keyword(None, min_length=16),
        caseless=True,
        examples=("Authorization: Bearer abcdef0123456789ABCDEF",),
    ),
    Detector(
        "credential_assignment",
        _C.PASSWORD,
        rb"(?:password|passwd|pwd|passphrase|secret|client_secret|api_?key|access_?token"
        rb"|auth_?token|refresh_?token)(?:\\?[\"'])?\s*(?:=|:|=>)\s*(?:\\?[\"'])?"
        rb"[^\s\"',;&<>(){}\[\]\\]",
        candidates.after_keyword(None),
        caseless=True,
        examples=("DB_PASSWORD=hunter2secret", '{"password": "correct horse"}'),
    ),
    Detector(
        "url_credentials",
        _C.PASSWORD,
        rb"://[^\s:/@\"'\\]+:[^\s/@\"'\\]+@",
        candidates.confirm_url_password,
        examples=("postgresql://app:s3cr3t-pass@db.internal:5432/shop",),
    ),
)

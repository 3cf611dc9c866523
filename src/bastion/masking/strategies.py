"""Whole-value masking functions, valid for the column's type in text and binary format.

This module owns `resolve_masker`: given a strategy, a class and a column's type OID, type
modifier and format code, it returns one `FieldMasker` (DataRow field bytes in, field bytes or
None for NULL out), chosen once per result column so the row loop only calls it. It owns the
guarantee that every output is something the server itself could have sent for that type:

redact: `****` (char(n): n of them), 0, the nil UUID, 1900-01-01 [00:00:00], 0.0.0.0 or ::,
an empty bytea or array, false, `"****"` in JSON. partial: the class rule on text
(`partial.py`), the last four digits of long integers, the last four hex digits of a UUID,
January 1st of the same year for dates, the /16 (IPv6: /48) network of an address. hash: `tok_`
and 16 base32 characters for text (fitted to char(n)/varchar(n)), a non-negative integer of the
same width, an integer within numeric(p, s), a version-8 UUID, a day or second of 1900-1999, an
address of the same family, the 32-byte HMAC for bytea. docs/masking.md has the full table.

Any other type is masked as text in text format and becomes NULL in binary format (the only
value valid for every type). `null` gives NULL everywhere: NOT NULL-minded ORMs may object.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import struct
from collections.abc import Callable
from typing import Final

from bastion.errors import ConfigError
from bastion.masking import datetext, pgtypes, pgvalues
from bastion.masking.classes import CLASS_SPECS, SensitiveClass, Strategy
from bastion.masking.partial import partial_text
from bastion.masking.tokens import HASH_NEEDS_KEY, TokenKey

FieldMasker = Callable[[bytes], bytes | None]
Builder = Callable[["MaskRequest"], FieldMasker]

TEXT_FORMAT: Final = 0
BINARY_FORMAT: Final = 1
REDACTED_TEXT: Final = "****"
HASH_DAY_RANGE: Final = 36_525  # 1900-01-01 .. 1999-12-31
_REDACTED_DAYS: Final = pgvalues.days_from_date(datetext.REDACTED_DATE)
_REDACTED_MICROS: Final = _REDACTED_DAYS * pgvalues.MICROS_PER_DAY
_NAME_MAX_BYTES: Final = 63
# Classes whose `partial` has a rule of its own in `partial.py`, not keep_ends.
_OWN_PARTIAL_RULES: Final = frozenset(
    {
        SensitiveClass.EMAIL,
        SensitiveClass.PERSON_NAME,
        SensitiveClass.BIRTH_DATE,
        SensitiveClass.IP_ADDRESS,
    }
)


class MaskRequest:
    """What a builder needs to know about one column."""

    __slots__ = ("binary", "key", "sensitive_class", "strategy", "type_modifier", "type_oid")

    def __init__(
        self,
        strategy: Strategy,
        sensitive_class: SensitiveClass,
        type_oid: int,
        type_modifier: int,
        binary: bool,
        key: TokenKey | None,
    ) -> None:
        self.strategy = strategy
        self.sensitive_class = sensitive_class
        self.type_oid = type_oid
        self.type_modifier = type_modifier
        self.binary = binary
        self.key = key

    def token_key(self) -> TokenKey:
        if self.key is None:
            raise ConfigError(HASH_NEEDS_KEY)
        return self.key


def _null(value: bytes) -> None:
    return None


class Constant:
    """A masker whose output never depends on the value (plans copy it without calling)."""

    __slots__ = ("output",)

    def __init__(self, output: bytes) -> None:
        self.output = output

    def __call__(self, value: bytes) -> bytes:
        return self.output


def _constant(output: bytes) -> FieldMasker:
    return Constant(output)


# Forms of `partial` on unlimited text that the native row rewriter applies itself to ASCII
# values (`plan.py`); every other value still goes to the masker.
EMAIL_DOMAIN: Final = ("email",)  # `***@domain`


def keep_ends_form(keep_first: int, keep_last: int) -> tuple[str, int, int]:
    """The letters and digits but the first `keep_first` and last `keep_last` are masked
    (both 0: long values keep their last four), as `partial.keep_ends` does."""
    return ("keep", keep_first, keep_last)


class Partial:
    """A text `partial` masker whose common case has a native form (`form`)."""

    __slots__ = ("form", "function")

    def __init__(self, function: FieldMasker, form: tuple[str | int, ...]) -> None:
        self.function = function
        self.form = form

    def __call__(self, value: bytes) -> bytes | None:
        return self.function(value)


# -- text ------------------------------------------------------------------------------------


def _fitter(type_oid: int, type_modifier: int) -> Callable[[str], bytes]:
    """Make a string fit the column: char(n) exactly n characters, varchar(n) at most n,
    name at most 63 bytes, "char" one byte."""
    length = type_modifier - 4 if type_modifier >= 4 else None
    if type_oid == pgtypes.BPCHAR and length is not None:
        return lambda text: text[:length].ljust(length).encode()
    if type_oid == pgtypes.VARCHAR and length is not None:
        return lambda text: text[:length].encode()
    if type_oid == pgtypes.NAME:
        return lambda text: text.encode()[:_NAME_MAX_BYTES].decode("utf-8", "ignore").encode()
    if type_oid == pgtypes.CHAR:
        return lambda text: text.encode()[:1]
    return lambda text: text.encode()


def _text(request: MaskRequest) -> FieldMasker:
    fit = _fitter(request.type_oid, request.type_modifier)
    padded = request.type_oid == pgtypes.BPCHAR

    def decode(value: bytes) -> str:
        text = value.decode("utf-8", "replace")
        return text.rstrip(" ") if padded else text

    if request.strategy is Strategy.PARTIAL:
        sensitive_class = request.sensitive_class

        def partial(value: bytes) -> bytes:
            return fit(partial_text(sensitive_class, decode(value)))

        unlimited = request.type_oid in (pgtypes.TEXT, pgtypes.UNKNOWN) or (
            request.type_oid == pgtypes.VARCHAR and request.type_modifier < 4
        )
        if sensitive_class is SensitiveClass.EMAIL and unlimited:
            # The most common partial by far, done on bytes: same result as partial_text.
            def email(value: bytes) -> bytes:
                at = value.rfind(b"@")
                return b"***" + value[at:] if 0 < at < len(value) - 1 else partial(value)

            return Partial(email, EMAIL_DOMAIN)
        if unlimited and sensitive_class not in _OWN_PARTIAL_RULES:
            spec = CLASS_SPECS[sensitive_class]
            return Partial(partial, keep_ends_form(spec.keep_first, spec.keep_last))
        return partial
    if request.strategy is Strategy.HASH:
        key = request.token_key()
        return lambda value: fit(key.text(decode(value).encode()))
    if padded and request.type_modifier >= 4:  # char(n): n asterisks, not **** and spaces
        return _constant(fit("*" * (request.type_modifier - 4)))
    return _constant(fit(REDACTED_TEXT))


def _json(request: MaskRequest) -> FieldMasker:
    prefix = b"\x01" if request.binary and request.type_oid == pgtypes.JSONB else b""
    redacted = prefix + json.dumps(REDACTED_TEXT).encode()

    def document(value: bytes) -> bytes:
        return value[len(prefix) :]

    if request.strategy is Strategy.HASH:
        key = request.token_key()
        return lambda value: prefix + json.dumps(key.text(document(value))).encode()
    if request.strategy is Strategy.PARTIAL:
        sensitive_class = request.sensitive_class

        def partial(value: bytes) -> bytes:
            try:
                parsed = json.loads(document(value))
            except ValueError:
                return redacted
            if not isinstance(parsed, str):
                return redacted
            kept = partial_text(sensitive_class, parsed)
            return prefix + json.dumps(kept, ensure_ascii=False).encode()

        return partial
    return _constant(redacted)


# -- numbers ---------------------------------------------------------------------------------

_INT_SIZES: Final = {pgtypes.INT2: 2, pgtypes.INT4: 4, pgtypes.INT8: 8}
_PARTIAL_INT_MIN_DIGITS: Final = 8


def _integer(request: MaskRequest) -> FieldMasker:
    size = _INT_SIZES[request.type_oid]
    binary = request.binary

    def decode(value: bytes) -> int:
        return pgvalues.int_from_binary(value, size) if binary else int(value)

    def encode(number: int) -> bytes:
        return pgvalues.int_to_binary(number, size) if binary else str(number).encode()

    if request.strategy is Strategy.PARTIAL:

        def partial(value: bytes) -> bytes:
            number = abs(decode(value))
            kept = number % 10_000 if len(str(number)) >= _PARTIAL_INT_MIN_DIGITS else 0
            return encode(kept)

        return partial
    if request.strategy is Strategy.HASH:
        key = request.token_key()
        return lambda value: encode(key.integer(str(decode(value)).encode(), size * 8))
    return _constant(encode(0))


def _numeric(request: MaskRequest) -> FieldMasker:
    typmod = pgvalues.numeric_typmod(request.type_modifier)
    precision, scale = typmod if typmod is not None else (15, 0)
    binary = request.binary

    def encode(integer: int) -> bytes:
        if binary:
            return pgvalues.numeric_to_binary(integer, scale)
        return (str(integer) + ("." + "0" * scale if scale > 0 else "")).encode()

    if request.strategy is Strategy.HASH:
        key = request.token_key()
        integer_digits = precision - max(scale, 0)
        step = 10 ** max(-scale, 0)

        def hashed(value: bytes) -> bytes:
            canonical = pgvalues.numeric_text_from_binary(value) if binary else value.decode()
            return encode(key.below(canonical.encode(), 10**integer_digits) * step)

        return hashed
    return _constant(encode(0))


def _float(request: MaskRequest) -> FieldMasker:
    layout = ">f" if request.type_oid == pgtypes.FLOAT4 else ">d"
    binary = request.binary

    def encode(number: float) -> bytes:
        return struct.pack(layout, number) if binary else repr(number).encode()

    def canonical(value: bytes) -> bytes:
        number = struct.unpack(layout, value)[0] if binary else float(value)
        return repr(number).encode()

    if request.strategy is Strategy.HASH:
        key = request.token_key()
        return lambda value: encode(float(key.below(canonical(value), 1 << 24)))
    return _constant(encode(0.0))


def _money(request: MaskRequest) -> FieldMasker:
    return _constant(b"\x00" * 8 if request.binary else b"0.00")


def _bool(request: MaskRequest) -> FieldMasker:
    return _constant(b"\x00" if request.binary else b"f")


# -- identifiers and addresses -------------------------------------------------------------

_NIL_UUID: Final = b"\x00" * 16


def _format_uuid(raw: bytes) -> bytes:
    hexed = raw.hex()
    return f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:]}".encode()


def _uuid(request: MaskRequest) -> FieldMasker:
    binary = request.binary

    def encode(raw: bytes) -> bytes:
        return raw if binary else _format_uuid(raw)

    def decode(value: bytes) -> bytes:
        raw = value if binary else bytes.fromhex(value.decode().replace("-", ""))
        if len(raw) != len(_NIL_UUID):
            raise ValueError("a UUID has 16 bytes")
        return raw

    if request.strategy is Strategy.PARTIAL:
        return lambda value: encode(_NIL_UUID[:14] + decode(value)[14:])
    if request.strategy is Strategy.HASH:
        key = request.token_key()
        return lambda value: encode(key.uuid(decode(value).hex().encode()))
    return _constant(encode(_NIL_UUID))


def _inet(request: MaskRequest) -> FieldMasker:
    is_cidr = request.type_oid == pgtypes.CIDR
    binary = request.binary
    strategy = request.strategy
    key = request.token_key() if strategy is Strategy.HASH else None

    def decode(value: bytes) -> tuple[int, int, bytes]:
        if binary:
            return pgvalues.inet_from_binary(value)
        interface = ipaddress.ip_interface(value.decode())
        family = pgvalues.INET_FAMILY_V4 if interface.version == 4 else pgvalues.INET_FAMILY_V6
        return family, interface.network.prefixlen, interface.ip.packed

    def encode(family: int, bits: int, address: bytes) -> bytes:
        if binary:
            return pgvalues.inet_to_binary(family, bits, is_cidr, address)
        text = str(ipaddress.ip_address(address))
        if is_cidr or bits != len(address) * 8:
            text += f"/{bits}"
        return text.encode()

    def masker(value: bytes) -> bytes:
        family, bits, address = decode(value)
        width = len(address) * 8
        if strategy is Strategy.PARTIAL:
            kept = min(bits, 16 if width == 32 else 48) if is_cidr else (16 if width == 32 else 48)
            network = int.from_bytes(address, "big") >> (width - kept) << (width - kept)
            return encode(family, kept if is_cidr else bits, network.to_bytes(len(address)))
        if key is not None:
            hashed = int.from_bytes(key.digest(address)[: len(address)], "big")
            if is_cidr:
                hashed = hashed >> (width - bits) << (width - bits) if bits else 0
            return encode(family, bits if is_cidr else width, hashed.to_bytes(len(address)))
        return redact(value)

    def redact(value: bytes) -> bytes:
        # Needs only the family, read without parsing, so even a malformed value is masked.
        v6 = value[:1] == b"\x03" if binary else b":" in value
        family, size = (pgvalues.INET_FAMILY_V6, 16) if v6 else (pgvalues.INET_FAMILY_V4, 4)
        return encode(family, 0 if is_cidr else size * 8, bytes(size))

    return redact if strategy is Strategy.REDACT else masker


def _bytea(request: MaskRequest) -> FieldMasker:
    binary = request.binary
    if request.strategy is Strategy.HASH:
        key = request.token_key()
        if binary:
            return key.digest
        return lambda value: b"\\x" + key.digest(pgvalues.bytea_from_text(value)).hex().encode()
    if binary:
        return _constant(b"")
    return lambda value: b"\\x" if value.startswith(b"\\x") else b""


# -- dates and times -----------------------------------------------------------------------


def _date(request: MaskRequest) -> FieldMasker:
    strategy = request.strategy
    key = request.token_key() if strategy is Strategy.HASH else None
    redacted_binary = pgvalues.int_to_binary(_REDACTED_DAYS, 4)

    def masked_days(days: int) -> int:
        if days in pgvalues.DATE_INFINITY:
            return _REDACTED_DAYS
        if key is not None:
            return _REDACTED_DAYS + key.below(str(days).encode(), HASH_DAY_RANGE)
        year = pgvalues.date_from_days(days).year
        return pgvalues.days_from_date(datetime.date(year, 1, 1))

    if request.binary:
        if strategy is Strategy.REDACT:
            return _constant(redacted_binary)
        return lambda value: pgvalues.int_to_binary(
            masked_days(pgvalues.int_from_binary(value, 4)), 4
        )
    if strategy is Strategy.REDACT:
        return datetext.redact_template

    def text(value: bytes) -> bytes:
        date = datetext.parse_iso_date(value)
        if date is None:
            return datetext.redact_template(value)
        days = masked_days(pgvalues.days_from_date(date))
        return pgvalues.date_from_days(days).isoformat().encode()

    return text


def _timestamp(request: MaskRequest) -> FieldMasker:
    strategy = request.strategy
    key = request.token_key() if strategy is Strategy.HASH else None
    with_zone = request.type_oid == pgtypes.TIMESTAMPTZ

    def masked_micros(micros: int) -> int:
        if micros in pgvalues.TIMESTAMP_INFINITY:
            return _REDACTED_MICROS
        if key is not None:
            seconds = key.below(str(micros).encode(), HASH_DAY_RANGE * 86_400)
            return _REDACTED_MICROS + seconds * 1_000_000
        year = pgvalues.datetime_from_micros(micros).year
        return pgvalues.micros_from_datetime(datetime.datetime(year, 1, 1))

    if request.binary:
        if strategy is Strategy.REDACT:
            return _constant(pgvalues.int_to_binary(_REDACTED_MICROS, 8))
        return lambda value: pgvalues.int_to_binary(
            masked_micros(pgvalues.int_from_binary(value, 8)), 8
        )
    if strategy is Strategy.REDACT:
        return datetext.redact_template

    def text(value: bytes) -> bytes:
        moment = datetext.parse_iso_timestamp(value)
        if moment is None:
            return datetext.redact_template(value)
        micros = masked_micros(pgvalues.micros_from_datetime(moment))
        return datetext.format_timestamp(pgvalues.datetime_from_micros(micros), with_zone=with_zone)

    return text


_ZERO_TIMES: Final = {
    pgtypes.TIME: (b"00:00:00", b"\x00" * 8),
    pgtypes.TIMETZ: (b"00:00:00+00", b"\x00" * 12),
    pgtypes.INTERVAL: (b"00:00:00", b"\x00" * 16),
}


def _time(request: MaskRequest) -> FieldMasker:
    text, binary = _ZERO_TIMES[request.type_oid]
    return _constant(binary if request.binary else text)


def _array(request: MaskRequest) -> FieldMasker:
    element = pgtypes.ARRAY_ELEMENT[request.type_oid]
    return _constant(pgvalues.empty_array_binary(element) if request.binary else b"{}")


_BUILDERS: Final[dict[int, Builder]] = {
    **{oid: _text for oid in pgtypes.STRING_TYPES | {pgtypes.CHAR}},
    pgtypes.JSON: _json,
    pgtypes.JSONB: _json,
    **{oid: _integer for oid in pgtypes.INTEGER_TYPES},
    pgtypes.NUMERIC: _numeric,
    pgtypes.FLOAT4: _float,
    pgtypes.FLOAT8: _float,
    pgtypes.MONEY: _money,
    pgtypes.BOOL: _bool,
    pgtypes.UUID: _uuid,
    pgtypes.INET: _inet,
    pgtypes.CIDR: _inet,
    pgtypes.BYTEA: _bytea,
    pgtypes.DATE: _date,
    pgtypes.TIMESTAMP: _timestamp,
    pgtypes.TIMESTAMPTZ: _timestamp,
    pgtypes.TIME: _time,
    pgtypes.TIMETZ: _time,
    pgtypes.INTERVAL: _time,
    **{oid: _array for oid in pgtypes.ARRAY_ELEMENT},
}


def resolve_masker(
    strategy: Strategy,
    sensitive_class: SensitiveClass,
    type_oid: int,
    type_modifier: int = -1,
    format_code: int = TEXT_FORMAT,
    key: TokenKey | None = None,
) -> FieldMasker:
    """The function that masks every non-NULL value of one result column."""
    if strategy is Strategy.NULL:
        return _null
    binary = format_code == BINARY_FORMAT
    builder = _BUILDERS.get(type_oid)
    if builder is None:
        if binary or not pgtypes.can_hold_text(type_oid):
            return _null
        builder = _text
    request = MaskRequest(strategy, sensitive_class, type_oid, type_modifier, binary, key)
    masker = builder(request)
    if isinstance(masker, Constant):
        return masker
    redact = builder(
        MaskRequest(Strategy.REDACT, sensitive_class, type_oid, type_modifier, binary, key)
    )
    fallback = redact if isinstance(redact, Constant) else _guarded(redact, _null)
    if masker is redact:
        return masker
    if isinstance(masker, Partial):
        return Partial(_guarded(masker.function, fallback), masker.form)
    return _guarded(masker, fallback)


def _guarded(masker: FieldMasker, fallback: FieldMasker) -> FieldMasker:
    """A value the masker cannot read (malformed, or in a form it does not expect) is still
    masked: with the type's redacted form, else NULL. It is never passed through."""

    def guarded(value: bytes) -> bytes | None:
        try:
            return masker(value)
        except (ValueError, struct.error, IndexError, OverflowError, UnicodeDecodeError):
            return fallback(value)

    return guarded


def mask_value(
    value: bytes | None,
    strategy: Strategy,
    sensitive_class: SensitiveClass,
    type_oid: int,
    type_modifier: int = -1,
    format_code: int = TEXT_FORMAT,
    key: TokenKey | None = None,
) -> bytes | None:
    """Mask one field (None is SQL NULL and stays NULL). For one-off use: plans resolve the
    masker once per column instead."""
    if value is None:
        return None
    masker = resolve_masker(strategy, sensitive_class, type_oid, type_modifier, format_code, key)
    return masker(value)

"""COPY TO rows in the text and CSV formats, converted to DataRow bodies and back for masking.

`COPY ... TO STDOUT` sends its rows as CopyData messages, one row per message in the text and
CSV formats: the row's bytes with the terminating line feed (a CSV row keeps quoted embedded
newlines inside the same message). To mask them with the row masker, the session turns each
row into a DataRow body (int16 field count, then per field an int32 length and that many
bytes, or -1 for NULL, all big-endian) with `row_to_data_row`, masks that, and turns the result
back into a COPY row with `data_row_to_row`.

Decoding follows the server's COPY FROM reader (copyfromparse.c), encoding follows what COPY TO
emits (copyto.c, CopyAttributeOutText and CopyAttributeOutCSV), so that re-encoding an
unmasked row reproduces the server's bytes exactly:

* text: backslash and the delimiter are backslash-escaped; backspace, form feed, line feed,
  carriage return, tab and vertical tab are written as \\b \\f \\n \\r \\t \\v; every other
  byte, other control characters included, is written as it is. NULL is the null string.
  Reading undoes every escape the format defines (also octal \\ooo and hex \\xhh) and takes a
  field as NULL when its raw bytes, before unescaping, equal the null string. A value whose
  escaped form equals the null string (the empty string under NULL '') is sent exactly like a
  NULL by the server too: the text format cannot tell them apart. A null string ending in an
  unfinished escape (NULL '\\') is refused: the server writes it, then the delimiter, which
  every reader takes as one escaped delimiter.
* csv: a value is quoted when it contains the delimiter, the quote, CR or LF, when it equals
  the null string, when FORCE_QUOTE asks for it, or when it is exactly `\\.` and the only
  column (the end-of-data marker; the server quotes it in no other case). Inside quotes, the
  quote and escape characters are preceded by the escape character. NULL is the unquoted null
  string; a quoted field is never NULL.

Values stay bytes in the client encoding, which must keep ASCII bytes for ASCII characters
only (true of UTF-8 and the single-byte and EUC encodings; `CopyFormat.of` refuses the client
encodings whose multibyte characters can contain ASCII bytes, such as SJIS and BIG5).

Not handled here: the binary format; the header line of `HEADER`, which the server sends as
the first CopyData and which is no data row (its caller must pass it through); FORCE_QUOTE
for a column list (`force_quote` quotes every column, FORCE_QUOTE *; quoting only changes
bytes, never values). A zero-column COPY sends each row as a bare line feed, which decodes
as one empty field: a caller that knows the column count is zero has nothing to mask.
Malformed input raises ProtocolViolation, with messages that name positions but never repeat
row content.
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from bastion.errors import ProtocolViolation

__all__ = [
    "CopyFormat",
    "data_row_to_row",
    "fields_to_row",
    "row_to_data_row",
    "row_to_fields",
]

_INT16: Final = struct.Struct("!h")
_INT32: Final = struct.Struct("!i")
_NULL_LENGTH: Final = _INT32.pack(-1)
_MAX_FIELDS: Final = 0x7FFF  # a DataRow's field count is an int16
_LF: Final = 0x0A

# Delimiters the server refuses in text format: backslash is ambiguous, and a letter or digit
# after a backslash means an escape sequence.
_TEXT_FORBIDDEN_DELIMITERS: Final = b"\\.abcdefghijklmnopqrstuvwxyz0123456789"

# Control characters COPY TO writes as a backslash and a letter (CopyAttributeOutText).
_TEXT_ESCAPES: Final = (
    (b"\x08", b"\\b"),
    (b"\x0c", b"\\f"),
    (b"\n", b"\\n"),
    (b"\r", b"\\r"),
    (b"\t", b"\\t"),
    (b"\x0b", b"\\v"),
)

# Bytes that make a text-format value need escaping (with the delimiter).
_TEXT_SPECIAL: Final = b"\\" + b"".join(raw for raw, _ in _TEXT_ESCAPES)

_BYTES: Final = tuple(bytes((byte,)) for byte in range(256))
_HEX_DIGITS: Final = b"0123456789abcdefABCDEF"

# What a backslash followed by one byte (not an octal digit, nor `x` and a hex digit) means
# when reading: the byte of \b \f \n \r \t \v, else (the delimiter included) that byte.
_UNESCAPE_ONE: Final = tuple(
    {escape[1]: raw for raw, escape in _TEXT_ESCAPES}.get(byte, _BYTES[byte]) for byte in range(256)
)

# Python codec names for PostgreSQL encoding names Python does not know.
_PG_ENCODINGS: Final = {"sql_ascii": "ascii", "koi8r": "koi8_r", "koi8u": "koi8_u"}
# Client-only encodings whose multibyte characters can contain ASCII bytes: a delimiter,
# quote or backslash byte might then belong to a character, which this module cannot know.
_EMBEDS_ASCII: Final = frozenset(
    {
        "shift_jis",
        "shift_jis_2004",
        "shift_jisx0213",
        "cp932",
        "big5",
        "big5hkscs",
        "cp950",
        "gbk",
        "gb18030",
        "cp949",
        "johab",
    }
)
_ASCII: Final = bytes(range(128))


@dataclass(frozen=True, slots=True)
class CopyFormat:
    """The options of one `COPY ... TO` in text or CSV format, as bytes in the client encoding.

    Constructing it directly takes every value literally (the defaults are the text format's,
    apart from quote and escape); `CopyFormat.of` applies each format's own defaults the way
    the server does. Invalid combinations, those the server itself refuses or that would make
    rows ambiguous, raise ValueError.
    """

    csv: bool = False
    delimiter: bytes = b"\t"  # single byte; for csv the default is b","
    null: bytes = b"\\N"  # for csv the default is b""
    quote: bytes = b'"'  # csv only, single byte
    escape: bytes = b'"'  # csv only, single byte; defaults to quote
    force_quote: bool = False  # csv: quote every non-NULL value when re-encoding
    _codec: _TextCodec | _CsvCodec = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        _check(self)
        object.__setattr__(self, "_codec", _CsvCodec(self) if self.csv else _TextCodec(self))

    @classmethod
    def of(
        cls,
        format: str,
        delimiter: str | None,
        null: str | None,
        quote: str | None,
        escape: str | None,
        force_quote: bool = False,
        encoding: str = "utf-8",
    ) -> CopyFormat:
        """The format of a COPY statement's options, None for each option not given.

        `format` is "text" or "csv" (any case); "binary" raises ValueError, as do unknown
        formats, QUOTE, ESCAPE or FORCE_QUOTE in text format, and a delimiter, quote or escape
        that is not a single byte in `encoding`: a Python codec name or a PostgreSQL encoding
        name (UTF8, LATIN1, WIN1252...). ESCAPE defaults to QUOTE, as in the server.
        """
        kind = format.lower()
        if kind == "binary":
            raise ValueError("COPY in binary format is not handled here")
        if kind not in ("text", "csv"):
            raise ValueError(f"COPY format {format!r} not recognized")
        csv = kind == "csv"
        if not csv:
            for name, value in (("QUOTE", quote), ("ESCAPE", escape)):
                if value is not None:
                    raise ValueError(f"COPY {name} requires CSV mode")
        codec = _python_codec(encoding)
        quote_bytes = _encode_option("quote", quote, codec, b'"')
        return cls(
            csv=csv,
            delimiter=_encode_option("delimiter", delimiter, codec, b"," if csv else b"\t"),
            null=_encode_option("null", null, codec, b"" if csv else b"\\N"),
            quote=quote_bytes,
            escape=_encode_option("escape", escape, codec, quote_bytes),
            force_quote=force_quote,
        )


def row_to_fields(row: bytes | memoryview, fmt: CopyFormat) -> list[bytes | None]:
    """The field values of one COPY row, escapes undone and quotes removed; None for NULL.

    `row` is one CopyData payload: the row with its terminating "\\n" (a "\\r\\n" or a missing
    final newline is accepted too). Raises ProtocolViolation for a malformed row: an empty
    message, an unterminated CSV quote, an unescaped (text) or unquoted (CSV) line break
    inside the row, or a text row ending in a lone backslash.
    """
    return fmt._codec.decode(_line(row))


def fields_to_row(fields: Sequence[bytes | None], fmt: CopyFormat) -> bytes:
    """One COPY row, ending in "\\n", encoding `fields` exactly as the server would."""
    return fmt._codec.encode(fields) + b"\n"


def row_to_data_row(row: bytes | memoryview, fmt: CopyFormat) -> bytes:
    """The DataRow body holding the fields of the COPY row `row` (see `row_to_fields`)."""
    fields = fmt._codec.decode(_line(row))
    count = len(fields)
    if count > _MAX_FIELDS:
        raise ProtocolViolation(f"a COPY row has {count} fields, more than a DataRow can hold")
    parts = [_INT16.pack(count)]
    append = parts.append
    pack = _INT32.pack
    for value in fields:
        if value is None:
            append(_NULL_LENGTH)
        else:
            append(pack(len(value)))
            append(value)
    return b"".join(parts)


def data_row_to_row(body: bytes | memoryview, fmt: CopyFormat) -> bytes:
    """The COPY row, ending in "\\n", for the fields of the DataRow body `body`.

    Raises ProtocolViolation when the body is malformed: shorter than its field count or
    lengths say, a negative field count, a negative length other than -1 (NULL), or bytes
    after the last field.
    """
    return fields_to_row(_data_row_fields(body), fmt)


# -- formats -------------------------------------------------------------------------------


def _check(fmt: CopyFormat) -> None:
    """Raise ValueError for options the server refuses (with its message, checked in its
    order) or that would make rows ambiguous."""
    delimiter, null, quote, escape = fmt.delimiter, fmt.null, fmt.quote, fmt.escape
    if len(delimiter) != 1:
        raise ValueError("COPY delimiter must be a single one-byte character")
    if delimiter in b"\r\n":
        raise ValueError("COPY delimiter cannot be newline or carriage return")
    if b"\r" in null or b"\n" in null:
        raise ValueError("COPY null representation cannot use newline or carriage return")
    if not fmt.csv and delimiter in _TEXT_FORBIDDEN_DELIMITERS:
        raise ValueError(f"COPY delimiter cannot be {delimiter.decode('ascii')!r}")
    if fmt.csv:
        if len(quote) != 1:
            raise ValueError("COPY quote must be a single one-byte character")
        if delimiter == quote:
            raise ValueError("COPY delimiter and quote must be different")
        if len(escape) != 1:
            raise ValueError("COPY escape must be a single one-byte character")
        if quote in b"\r\n" or escape in b"\r\n":
            raise ValueError("COPY quote and escape cannot be newline or carriage return")
    elif fmt.force_quote:
        raise ValueError("COPY FORCE_QUOTE requires CSV mode")
    if delimiter in null:
        raise ValueError("COPY delimiter character must not appear in the NULL specification")
    if fmt.csv and quote in null:
        raise ValueError("CSV quote character must not appear in the NULL specification")


def _python_codec(encoding: str) -> str:
    """The Python codec for a client encoding; ValueError if unknown or not handled here."""
    name = encoding.strip().lower()
    name = _PG_ENCODINGS.get(name, name)
    if name.startswith("win") and name[3:].isdigit():
        name = "cp" + name[3:]
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        raise ValueError(f"unknown client encoding {encoding!r}") from None
    try:
        ascii_compatible = _ASCII.decode("ascii").encode(codec) == _ASCII
    except (UnicodeError, ValueError):
        ascii_compatible = False
    if codec in _EMBEDS_ASCII or not ascii_compatible:
        raise ValueError(
            f"COPY in client encoding {encoding!r} is not handled: its characters can "
            "contain ASCII bytes"
        )
    return codec


def _encode_option(name: str, value: str | None, codec: str, default: bytes) -> bytes:
    """An option's bytes in the client encoding, or `default` when the option is not given."""
    if value is None:
        return default
    try:
        return value.encode(codec)
    except UnicodeError:
        raise ValueError(f"COPY {name} cannot be represented in the client encoding") from None


# -- rows ----------------------------------------------------------------------------------


def _line(row: bytes | memoryview) -> bytes:
    """The row without its line terminator ("\\n" or "\\r\\n", or none)."""
    data = bytes(row)
    if not data:
        raise ProtocolViolation("an empty COPY data message carries no row")
    if data[-1] == _LF:
        return data[:-2] if data[-2:-1] == b"\r" else data[:-1]
    return data


def _line_break_error(kind: str, line: bytes, start: int, stop: int) -> ProtocolViolation:
    """The error for the first raw line break in `line[start:stop]`, which has one: the
    message held more than one row."""
    position = min(
        p for p in (line.find(b"\n", start, stop), line.find(b"\r", start, stop)) if p >= 0
    )
    what = "line feed" if line[position] == _LF else "carriage return"
    return ProtocolViolation(f"a COPY {kind} row has an {what} inside it, at byte {position}")


def _check_line_breaks(kind: str, line: bytes, start: int, stop: int) -> None:
    """Raise ProtocolViolation if `line[start:stop]`, read outside escapes or quotes, holds a
    raw line break."""
    if line.find(b"\n", start, stop) >= 0 or line.find(b"\r", start, stop) >= 0:
        raise _line_break_error(kind, line, start, stop)


class _TextCodec:
    """Rows of the text format for one delimiter and null string."""

    __slots__ = ("_delimiter", "_null", "_replacements", "_special")

    def __init__(self, fmt: CopyFormat) -> None:
        delimiter, null = fmt.delimiter, fmt.null
        self._delimiter = delimiter
        self._null = null
        if not _ends_cleanly(null + delimiter, len(null)):
            # NULL '\' (or one ending in `\x4` before an `A` delimiter): the server accepts
            # it and writes `\` and the delimiter, which every reader takes as an escape.
            raise ValueError(
                "COPY null representation ends in an escape that takes in the delimiter: "
                "rows using it cannot be read back"
            )
        self._special = _TEXT_SPECIAL + delimiter
        replacements = [(b"\\", b"\\\\"), *_TEXT_ESCAPES]
        if not any(delimiter == raw for raw, _ in _TEXT_ESCAPES):
            # A control-character delimiter without a letter escape is written as a
            # backslash and the delimiter itself, like any other delimiter.
            replacements.append((delimiter, b"\\" + delimiter))
        self._replacements = tuple(replacements)

    def decode(self, line: bytes) -> list[bytes | None]:
        """The fields of a row without its terminator."""
        null = self._null
        pieces = line.split(self._delimiter)
        # Split on every delimiter when no backslash can escape one: none in the row, or
        # only in fields that are exactly the null string (which never ends in an escape).
        if b"\\" not in line or all(b"\\" not in raw or raw == null for raw in pieces):
            if b"\n" in line or b"\r" in line:
                raise _line_break_error("text", line, 0, len(line))
            return [None if raw == null else raw for raw in pieces]
        return self._decode_escaped(line)

    def _decode_escaped(self, line: bytes) -> list[bytes | None]:
        """`decode` for a row with escape sequences, read left to right like the server."""
        null, delimiter = self._null, self._delimiter
        size = len(line)
        breaks = b"\n" in line or b"\r" in line
        out: list[bytes | None] = []
        parts: list[bytes] = []
        start = position = 0
        backslash = line.find(b"\\")
        separator = line.find(delimiter)
        while True:
            if separator >= 0 and (backslash < 0 or separator < backslash):
                stop = separator
            elif backslash < 0:
                stop = size
            else:
                if breaks:
                    _check_line_breaks("text", line, position, backslash)
                parts.append(line[position:backslash])
                byte, position = _escape_at(line, backslash)
                parts.append(byte)
                backslash = line.find(b"\\", position)
                if 0 <= separator < position:  # the escape took in the delimiter
                    separator = line.find(delimiter, position)
                continue
            if breaks:
                _check_line_breaks("text", line, position, stop)
            if line[start:stop] == null:
                out.append(None)
            else:
                parts.append(line[position:stop])
                out.append(b"".join(parts))
            if stop == size:
                return out
            parts = []
            start = position = stop + 1
            separator = line.find(delimiter, position)

    def encode(self, fields: Sequence[bytes | None]) -> bytes:
        """The row for `fields`, without its terminator."""
        null = self._null
        special = self._special
        parts: list[bytes] = []
        append = parts.append
        for value in fields:
            if value is None:
                append(null)
            elif len(value.translate(None, special)) == len(value):
                append(value)
            else:
                for raw, escaped in self._replacements:
                    if raw in value:
                        value = value.replace(raw, escaped)
                append(value)
        return self._delimiter.join(parts)


def _escape_at(data: bytes, at: int) -> tuple[bytes, int]:
    """The byte the escape sequence whose backslash is at `at` stands for, and where the
    sequence ends, read as the server does: up to three octal digits, `x` and one or two hex
    digits, a letter of \\b \\f \\n \\r \\t \\v, or any other byte standing for itself."""
    size = len(data)
    end = at + 2
    if end > size:
        raise ProtocolViolation("a COPY text row ends in a lone backslash")
    byte = data[at + 1]
    if 0x30 <= byte <= 0x37:
        value = byte - 0x30
        limit = min(at + 4, size)
        while end < limit and 0x30 <= data[end] <= 0x37:
            value = (value << 3) + data[end] - 0x30
            end += 1
        return _BYTES[value & 0xFF], end
    if byte == 0x78 and end < size and data[end] in _HEX_DIGITS:  # x
        stop = end + 2 if end + 1 < size and data[end + 1] in _HEX_DIGITS else end + 1
        return _BYTES[int(data[end:stop], 16)], stop
    return _UNESCAPE_ONE[byte], end


def _ends_cleanly(data: bytes, boundary: int) -> bool:
    """Whether reading `data`'s escape sequences from its start ends one exactly at
    `boundary`, rather than running across it."""
    position = data.find(b"\\")
    while 0 <= position < boundary:
        try:
            position = _escape_at(data, position)[1]
        except ProtocolViolation:
            return False
        if position > boundary:
            return False
        position = data.find(b"\\", position)
    return True


class _CsvCodec:
    """Rows of the CSV format for one delimiter, null string, quote and escape."""

    __slots__ = ("_delimiter", "_escape", "_force_quote", "_null", "_quote", "_special")

    def __init__(self, fmt: CopyFormat) -> None:
        self._delimiter = fmt.delimiter
        self._null = fmt.null
        self._quote = fmt.quote
        self._escape = fmt.escape
        self._force_quote = fmt.force_quote
        self._special = b"\r\n" + fmt.delimiter + fmt.quote

    def decode(self, line: bytes) -> list[bytes | None]:
        """The fields of a row without its terminator."""
        null = self._null
        if self._quote not in line:
            if b"\n" in line or b"\r" in line:
                raise _line_break_error("CSV", line, 0, len(line))
            return [None if raw == null else raw for raw in line.split(self._delimiter)]
        return self._decode_quoted(line)

    def _decode_quoted(self, line: bytes) -> list[bytes | None]:
        """`decode` for a row with quotes, read left to right like the server."""
        null, delimiter, quote = self._null, self._delimiter, self._quote
        size = len(line)
        breaks = b"\n" in line or b"\r" in line
        out: list[bytes | None] = []
        parts: list[bytes] = []
        saw_quote = False
        start = position = 0
        opening = line.find(quote)
        separator = line.find(delimiter)
        while True:
            if separator >= 0 and (opening < 0 or separator < opening):
                stop = separator
            elif opening < 0:
                stop = size
            else:
                if breaks:
                    _check_line_breaks("CSV", line, position, opening)
                parts.append(line[position:opening])
                saw_quote = True
                position = self._quoted(line, opening, parts)
                opening = line.find(quote, position)
                if 0 <= separator < position:  # the delimiter was quoted
                    separator = line.find(delimiter, position)
                continue
            if breaks:
                _check_line_breaks("CSV", line, position, stop)
            if saw_quote:
                parts.append(line[position:stop])
                out.append(b"".join(parts))
            else:
                raw = line[start:stop]
                out.append(None if raw == null else raw)
            if stop == size:
                return out
            parts = []
            saw_quote = False
            start = position = stop + 1
            separator = line.find(delimiter, position)

    def _quoted(self, line: bytes, opening: int, parts: list[bytes]) -> int:
        """Append the value of the quoted section whose quote is at `opening`; return where
        the section ends, after its closing quote. Inside quotes, the escape character before
        a quote or escape character stands for that character; any other byte (a lone escape
        character too) stands for itself."""
        quote, escape = self._quote, self._escape
        size = len(line)
        position = opening + 1
        closing = line.find(quote, position)
        if quote == escape:
            while closing >= 0:
                parts.append(line[position:closing])
                after = closing + 1
                if after < size and line[after] == quote[0]:
                    parts.append(quote)
                    position = after + 1
                    closing = line.find(quote, position)
                    continue
                return after
        else:
            escaped = line.find(escape, position)
            while closing >= 0:
                if escaped < 0 or closing < escaped:
                    parts.append(line[position:closing])
                    return closing + 1
                parts.append(line[position:escaped])
                after = escaped + 1
                if after < size and line[after] in (quote[0], escape[0]):
                    parts.append(line[after : after + 1])
                    position = after + 1
                    if closing < position:
                        closing = line.find(quote, position)
                else:
                    parts.append(escape)
                    position = after
                escaped = line.find(escape, position)
        raise ProtocolViolation(
            f"a COPY CSV row has an unterminated quoted field starting at byte {opening}"
        )

    def encode(self, fields: Sequence[bytes | None]) -> bytes:
        """The row for `fields`, without its terminator."""
        null = self._null
        quote, escape = self._quote, self._escape
        force = self._force_quote
        special = self._special
        single = len(fields) == 1
        parts: list[bytes] = []
        append = parts.append
        for value in fields:
            if value is None:
                append(null)
            elif (
                force
                or value == null
                or len(value.translate(None, special)) != len(value)
                or (single and value == b"\\.")
            ):
                if escape in value:
                    value = value.replace(escape, escape + escape)
                if quote != escape and quote in value:
                    value = value.replace(quote, escape + quote)
                append(quote + value + quote)
            else:
                append(value)
        return self._delimiter.join(parts)


# -- DataRow bodies ------------------------------------------------------------------------


def _data_row_fields(body: bytes | memoryview) -> list[bytes | None]:
    """The field values of a DataRow body; ProtocolViolation if it is malformed."""
    data = bytes(body)
    size = len(data)
    if size < 2:
        raise ProtocolViolation("a DataRow body is too short to hold its field count")
    count = _INT16.unpack_from(data, 0)[0]
    if count < 0:
        raise ProtocolViolation(f"a DataRow has a negative field count ({count})")
    unpack = _INT32.unpack_from
    fields: list[bytes | None] = []
    append = fields.append
    position = 2
    for number in range(1, count + 1):
        if position + 4 > size:
            raise ProtocolViolation(
                f"a DataRow ends before the length of its field {number} of {count}"
            )
        length = unpack(data, position)[0]
        position += 4
        if length < 0:
            if length != -1:
                raise ProtocolViolation(f"a DataRow field has length {length}")
            append(None)
            continue
        end = position + length
        if end > size:
            raise ProtocolViolation(
                f"a DataRow is shorter than its field lengths say: field {number} of {count} "
                f"has {length} bytes, {size - position} remain"
            )
        append(data[position:end])
        position = end
    if position != size:
        raise ProtocolViolation(f"a DataRow has {size - position} bytes after its last field")
    return fields

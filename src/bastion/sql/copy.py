"""COPY: direction, endpoint, and the data it moves.

`COPY t FROM ...` writes t, `COPY t TO ...` and `COPY (query) TO ...` read. A server-side file
or a program (`TO PROGRAM 'sh -c ...'`) is flagged: both run with the server's privileges.
The columns copied are reported (`*` when no column list is given): projection for COPY TO,
assignment for COPY FROM. COPY TO a file or program `moves_data`: what it copies leaves
through no result set that masking could see.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion.sql import flags
from bastion.sql.columns import ASSIGNMENT, OTHER, PROJECTION, STAR, WHERE
from bastion.sql.relations import Relation, Scope, table_from_range_var
from bastion.sql.statement import CopyInfo
from bastion.sql.walker import Node, strings

if TYPE_CHECKING:
    from bastion.sql.collector import Collector, Handler


def copy_statement(collector: Collector, body: Node, scope: Scope | None) -> None:
    is_from = bool(body.get("is_from"))
    filename = body.get("filename")
    program = bool(body.get("is_program"))
    if program:
        target = "program"
        collector.flags.add(flags.COPY_PROGRAM)
    elif filename is not None:
        target = "file"
        collector.flags.add(flags.COPY_SERVER_FILE)
    else:
        target = "stdin" if is_from else "stdout"
    # A table or query written to a server file or program leaves through no result set.
    if not is_from and target in ("file", "program"):
        collector.moves_data = True
    query = body.get("query")
    collector.copy = CopyInfo(
        direction="from" if is_from else "to",
        target=target,
        path=str(filename) if filename is not None else None,
        query=query is not None,
    )
    copy_scope = Scope(parent=scope)
    relation = body.get("relation")
    if isinstance(relation, dict):
        table = table_from_range_var(relation)
        if is_from:
            collector.write(table)
        else:
            collector.read(table)
        copy_scope.relations.append(Relation(table.name, table))
        clause = ASSIGNMENT if is_from else PROJECTION
        for name in strings(body.get("attlist")) or [STAR]:
            collector.column(name, clause, table)
    collector.expr(query, OTHER, scope)
    collector.expr(body.get("whereClause"), WHERE, copy_scope)


HANDLERS: dict[str, Handler] = {"CopyStmt": copy_statement}

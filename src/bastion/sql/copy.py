"""COPY: direction, endpoint, data format, and the data it moves.

`COPY t FROM ...` writes t, `COPY t TO ...` and `COPY (query) TO ...` read. A server-side file
or a program (`TO PROGRAM 'sh -c ...'`) is flagged: both run with the server's privileges.
The columns copied are reported (`*` when no column list is given): projection for COPY TO,
assignment for COPY FROM. COPY TO a file or program `moves_data`: what it copies leaves
through no result set that masking could see.

The format options (FORMAT, DELIMITER, NULL, HEADER, QUOTE, ESCAPE, FORCE_QUOTE, ENCODING)
are read as the server reads them, so that COPY's data can be parsed row by row. The parser
turns the old syntax (`WITH CSV HEADER`, `BINARY`, `DELIMITER AS ','`) into the same options.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from bastion.sql import flags
from bastion.sql.columns import ASSIGNMENT, OTHER, PROJECTION, STAR, WHERE
from bastion.sql.relations import Relation, Scope, table_from_range_var
from bastion.sql.statement import CopyInfo
from bastion.sql.walker import Node, body_of, def_elems, strings

if TYPE_CHECKING:
    from bastion.sql.collector import Collector, Handler

_FORMATS = frozenset({"text", "csv", "binary"})  # compared case-sensitively, as the server does
_TEXT_OPTIONS = ("delimiter", "null", "quote", "escape", "encoding")
# Options that leave COPY TO's output as it is (most are for COPY FROM only). Any other name
# is not understood: a newer server might lay its data out differently.
_OTHER_OPTIONS = frozenset(
    {"freeze", "force_not_null", "force_null", "default", "on_error", "log_verbosity",
     "reject_limit"}
)  # fmt: skip


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
    info = CopyInfo(
        direction="from" if is_from else "to",
        target=target,
        path=str(filename) if filename is not None else None,
        query=query is not None,
    )
    collector.copy = with_options(info, body.get("options"))
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


def with_options(info: CopyInfo, options: Any) -> CopyInfo:
    """`info` with the format fields a CopyStmt's `options` (DefElem nodes) give."""
    copy_format = "text"
    texts: dict[str, str] = {}
    header = False
    force_quote = False
    known = True
    for name, arg in def_elems(options):
        if name == "format":
            value = _text(arg)
            known = known and value in _FORMATS
            copy_format = value if value in _FORMATS else copy_format
        elif name in _TEXT_OPTIONS:
            value = _text(arg)
            known = known and value is not None
            if value is not None:
                texts[name] = value
        elif name == "header":
            choice = _header(arg)
            known = known and choice is not None
            header = bool(choice)
        elif name == "force_quote":  # `*` or a column list
            force_quote = True
            star_or_list = body_of(arg, "A_Star") is not None or body_of(arg, "List") is not None
            known = known and star_or_list
        elif name not in _OTHER_OPTIONS:
            known = False
    return replace(
        info,
        format=copy_format,
        delimiter=texts.get("delimiter"),
        null=texts.get("null"),
        header=header,
        quote=texts.get("quote"),
        escape=texts.get("escape"),
        force_quote=force_quote,
        encoding=texts.get("encoding"),
        options_known=known,
    )


def _text(arg: Any) -> str | None:
    """An option's value as text, as the server's defGetString reads it; None for anything
    else (no value, a list, `*`)."""
    if not isinstance(arg, dict) or len(arg) != 1:
        return None
    ((node_type, body),) = arg.items()
    if not isinstance(body, dict):
        return None
    if node_type == "String":  # the JSON tree omits empty values: NULL '' has no sval
        return str(body.get("sval", ""))
    if node_type == "Integer":
        return str(body.get("ival", 0))
    if node_type == "Float":
        return str(body.get("fval", ""))
    if node_type == "Boolean":
        return "true" if body.get("boolval") else "false"
    return None


def _header(arg: Any) -> bool | None:
    """HEADER's value: none means true; 0 or 1; true, false, on, off or match (any case).
    None for what the server rejects. MATCH (COPY FROM) expects a header line, so it is true."""
    if arg is None:
        return True
    integer = body_of(arg, "Integer")
    if integer is not None:
        number = integer.get("ival", 0)
        return bool(number) if number in (0, 1) else None
    text = _text(arg)
    if text is None:
        return None
    text = text.lower()
    if text in ("true", "on", "match"):
        return True
    if text in ("false", "off"):
        return False
    return None


HANDLERS: dict[str, Handler] = {"CopyStmt": copy_statement}

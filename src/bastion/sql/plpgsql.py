"""Code inside SQL: DO blocks and function or procedure bodies.

PL/pgSQL is parsed with libpg_query's PL/pgSQL parser (`parse_plpgsql_json`), the same one the
server compiles with. Every embedded SQL statement (plain statements, PERFORM, RETURN QUERY,
FOR ... IN query, OPEN ... FOR query, cursor declarations) is analyzed and listed in `inner`;
every expression (conditions, assignments, RAISE arguments) is analyzed too and its tables,
functions and flags are folded into the outer statement. EXECUTE of a string sets
`dynamic_sql`; when that string is a literal, its statements are analyzed and listed as well.

Whatever cannot be read (another language, a body that does not parse) sets `dynamic_sql` and
a flag, so that policy treats it as able to do anything.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pglast import parser as pg_parser

from bastion.sql import flags
from bastion.sql.kinds import UNKNOWN
from bastion.sql.walker import Node, body_of, def_elem_string, def_elem_true, def_elems, list_items
from bastion.sql.walker import string_constant as _string_constant

if TYPE_CHECKING:
    from bastion.sql.collector import Collector
    from bastion.sql.relations import Scope

# PLpgSQL_expr parse modes (RawParseMode in the server).
_MODE_STATEMENT = 0
_MODE_TYPE_NAME = 1
_MODE_EXPRESSION = 2
_MODE_ASSIGNMENTS = (3, 4, 5)

_DYNAMIC_STATEMENTS = ("PLpgSQL_stmt_dynexecute", "PLpgSQL_stmt_dynfors")


def do_block(collector: Collector, body: Node, scope: Scope | None) -> None:
    collector.flags.add(flags.DO_BLOCK)
    language = "plpgsql"
    source = ""
    for name, arg in def_elems(body.get("args")):
        if name == "language":
            language = (def_elem_string(arg) or "").lower()
        elif name == "as":
            source = def_elem_string(arg) or ""
    if language != "plpgsql":
        collector.flags.add(flags.DO_OTHER_LANGUAGE)
        collector.dynamic_sql = True
        return
    _plpgsql(collector, "DO " + _dollar_quote(source))


def create_function(collector: Collector, body: Node, scope: Scope | None) -> None:
    """CREATE FUNCTION / PROCEDURE: SECURITY DEFINER, and what the body would run."""
    language = None
    source: list[str] = []
    for name, arg in def_elems(body.get("options")):
        if name == "language":
            language = (def_elem_string(arg) or "").lower()
        elif name == "as":
            source = [text for text in map(_string_constant, list_items(arg)) if text is not None]
        elif name == "security" and def_elem_true(arg):
            collector.flags.add(flags.SECURITY_DEFINER)
    # Parameter defaults run at call time; walk them like any expression.
    collector.expr(body.get("parameters"), "other", scope)
    sql_body = body.get("sql_body")
    if sql_body is not None:  # BEGIN ATOMIC ... END / RETURN expr: already parsed
        for statement in _statements(sql_body):
            collector.sub_statement(statement, scope)
        return
    if language in (None, "sql"):
        if len(source) != 1:
            collector.unanalyzable()
            return
        infos = collector.sql_text(source[0])
        if any(info.kind == UNKNOWN for info in infos):
            collector.unanalyzable()
        return
    if language == "plpgsql":
        # The whole statement is parsed, so that parameters and the return type are known.
        _plpgsql(collector, collector.text)
        return
    collector.flags.add(flags.FUNCTION_OTHER_LANGUAGE)
    collector.dynamic_sql = True


def _statements(sql_body: Any) -> list[Node]:
    """The statements of a parsed SQL-standard body: a RETURN, or lists of statements."""
    if isinstance(sql_body, dict) and "List" not in sql_body:
        return [sql_body]
    return [stmt for item in list_items(sql_body) for stmt in _statements(item)]


def _dollar_quote(source: str) -> str:
    tag = "$bastion$"
    counter = 0
    while tag in source:
        counter += 1
        tag = f"$bastion{counter}$"
    return f"{tag}{source}{tag}"


class _Found:
    """PL/pgSQL expressions found in a function tree."""

    __slots__ = ("dynamic", "dynamic_queries", "expressions")

    def __init__(self) -> None:
        self.expressions: list[tuple[int, str]] = []  # (parse mode, text)
        self.dynamic_queries: list[str] = []  # the string expressions EXECUTE runs
        self.dynamic = False

    def walk(self, value: Any) -> None:
        if isinstance(value, list):
            for item in value:
                self.walk(item)
            return
        if not isinstance(value, dict):
            return
        for key, child in value.items():
            if key == "PLpgSQL_expr" and isinstance(child, dict):
                self.expressions.append(
                    (int(child.get("parseMode", 0)), str(child.get("query", "")))
                )
                continue
            if key in _DYNAMIC_STATEMENTS and isinstance(child, dict):
                self.dynamic = True
                self._dynamic_query(child.get("query"))
            elif key == "dynquery":
                self.dynamic = True
                self._dynamic_query(child)
            if isinstance(child, (dict, list)):
                self.walk(child)

    def _dynamic_query(self, expr: Any) -> None:
        body = body_of(expr, "PLpgSQL_expr")
        if body is not None:
            self.dynamic_queries.append(str(body.get("query", "")))


def _plpgsql(collector: Collector, text: str) -> None:
    try:
        functions = json.loads(pg_parser.parse_plpgsql_json(text))
    except (pg_parser.ParseError, ValueError):
        collector.unanalyzable()
        return
    if not isinstance(functions, list) or len(functions) != 1:
        collector.unanalyzable()
        return
    found = _Found()
    found.walk(functions[0])
    if found.dynamic:
        collector.dynamic_sql = True
    for mode, query in found.expressions:
        if mode == _MODE_TYPE_NAME:
            continue
        if mode == _MODE_STATEMENT:
            infos = collector.sql_text(query)
        else:
            value = query if mode == _MODE_EXPRESSION else _assigned_value(query)
            if value is None:
                collector.unanalyzable()
                continue
            infos = collector.sql_text("SELECT " + value, as_inner=False)
        if not infos or any(info.kind == UNKNOWN for info in infos):
            collector.unanalyzable()
    for query in found.dynamic_queries:
        literal = _literal(query)
        if literal:
            collector.sql_text(literal)


def _assigned_value(assignment: str) -> str | None:
    """The expression of `target := expr` (or `target = expr`), found with the SQL scanner so
    that `:=` inside strings or brackets is not mistaken for the assignment."""
    try:
        tokens = pg_parser.scan(assignment)
    except pg_parser.ParseError:
        return None
    depth = 0
    for token in tokens:
        if token.name in ("ASCII_40", "ASCII_91"):
            depth += 1
        elif token.name in ("ASCII_41", "ASCII_93"):
            depth -= 1
        elif depth == 0 and token.name in ("COLON_EQUALS", "ASCII_61"):
            return assignment[token.end + 1 :]
    return None


def _literal(expression: str) -> str | None:
    """The text of an EXECUTE argument that is a string literal (or literals joined with ||)."""
    try:
        tree = json.loads(pg_parser.parse_sql_json("SELECT " + expression))
        target = tree["stmts"][0]["stmt"]["SelectStmt"]["targetList"][0]["ResTarget"]["val"]
    except (pg_parser.ParseError, ValueError, KeyError, IndexError, TypeError):
        return None
    return _concatenated(target)


def _concatenated(node: Any) -> str | None:
    text = _string_constant(node)
    if text is not None:
        return text
    expr = body_of(node, "A_Expr")
    if expr is not None and expr.get("kind") == "AEXPR_OP":
        names = [n.get("String", {}).get("sval") for n in expr.get("name", [])]
        if names == ["||"]:
            left, right = _concatenated(expr.get("lexpr")), _concatenated(expr.get("rexpr"))
            if left is not None and right is not None:
                return left + right
    return None

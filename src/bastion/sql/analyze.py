"""Split and analyze SQL with libpg_query (through pglast), the server's own grammar.

`analyze(sql)` is the entry point: every statement of a client message, in order, as a
StatementInfo. Results are cached by SQL text in a bounded LRU, so a statement a client repeats
is analyzed once. A single query or DML statement whose analysis read no literal's value (see
`bastion.sql.literals`) is also kept by its normalized text (literals replaced by `$n`): the
same statement with other literals (`WHERE aid = 12`, then `WHERE aid = 13`) reuses that
analysis with its own text, at the cost of normalizing it. Texts holding a `$` (parameters,
dollar quotes) are never kept or matched that way: there a parameter and a literal would look
alike. Anything the parser rejects becomes a single `unknown` statement carrying the
parser's message; a statement whose analysis fails for any other reason becomes `unknown` too.
Callers that must understand a statement treat `unknown` as a reason to refuse.

The parse tree is read as JSON dicts (`parse_sql_json`), never as pglast's Python objects,
which cost an order of magnitude more to build.
"""

from __future__ import annotations

import dataclasses
import json
from functools import lru_cache
from typing import Any

from pglast import parser as pg_parser

from bastion.sql import copy, ddl, dml, literals, utility
from bastion.sql.collector import Collector, Handler
from bastion.sql.kinds import UNKNOWN
from bastion.sql.relations import Scope
from bastion.sql.statement import StatementInfo

ANALYSIS_CACHE_SIZE = 8192
# Statement kinds whose analysis may be reused across literals (when it read none of them).
_SHAPE_KINDS = frozenset({"select", "insert", "update", "delete"})
# How a reused analysis's text is cut from a message: the message stripped, then also
# without a final semicolon.
_WHOLE, _BEFORE_SEMICOLON = 0, 1
_shapes: dict[str, tuple[StatementInfo, int]] = {}


def _select(collector: Collector, body: dict[str, Any], scope: Scope | None) -> None:
    collector.select(body, scope)


HANDLERS: dict[str, Handler] = {
    "SelectStmt": _select,
    **dml.HANDLERS,
    **ddl.HANDLERS,
    **utility.HANDLERS,
    **copy.HANDLERS,
}


def analyze(sql: str) -> tuple[StatementInfo, ...]:
    """Every statement in `sql`, in order. An empty string yields no statements."""
    return _analyze_cached(sql)


def clear_cache() -> None:
    _analyze_cached.cache_clear()
    _shapes.clear()


@lru_cache(maxsize=ANALYSIS_CACHE_SIZE)
def _analyze_cached(sql: str) -> tuple[StatementInfo, ...]:
    shape = _shape(sql)
    if shape is not None:
        known = _shapes.get(shape)
        if known is not None:
            text = _cut(sql, known[1])
            if text is not None:
                return (dataclasses.replace(known[0], text=text),)
    enclosing = literals.start()
    try:
        infos = _analyze(sql)
    finally:
        literals_read = literals.finish(enclosing)
    if shape is not None and not literals_read and len(infos) == 1:
        _keep_shape(shape, sql, infos[0])
    return infos


def _shape(sql: str) -> str | None:
    """`sql` with its literals replaced by `$n`; None when that would not say where the
    literals were: when `sql` has `$` already (a parameter `$1` and a literal would both
    become `$n`), or does not parse."""
    if "$" in sql or "\x00" in sql:
        return None
    try:
        return str(pg_parser.normalize(sql))
    except (pg_parser.ParseError, ValueError, UnicodeError, RecursionError):
        return None


def _cut(sql: str, how: int) -> str | None:
    text = sql.strip()
    if how == _WHOLE:
        return text
    return text[:-1].rstrip() if text.endswith(";") else None


def _keep_shape(shape: str, sql: str, info: StatementInfo) -> None:
    """Keep `info` for statements that differ from `sql` only in literals, when nothing of it
    can depend on them."""
    if (
        info.kind not in _SHAPE_KINDS
        or not info.parsed
        or info.inner
        or info.copy is not None
        or info.dynamic_sql
    ):
        return
    for how in (_WHOLE, _BEFORE_SEMICOLON):
        if _cut(sql, how) == info.text:
            if len(_shapes) >= ANALYSIS_CACHE_SIZE:
                _shapes.clear()
            _shapes[shape] = (info, how)
            return


def _analyze(sql: str) -> tuple[StatementInfo, ...]:
    if "\x00" in sql:
        # The parser stops at a NUL byte and would not see what follows it.
        return (_unknown(sql, "the statement text contains a NUL character"),)
    try:
        tree = json.loads(pg_parser.parse_sql_json(sql))
        encoded = sql.encode()
    except pg_parser.ParseError as exc:
        return (_unknown(sql, str(exc)),)
    except (ValueError, RecursionError, UnicodeError) as exc:
        return (_unknown(sql, f"cannot parse: {exc}"),)
    infos: list[StatementInfo] = []
    for raw in tree.get("stmts", []):
        text = _statement_text(encoded, raw)
        normalized = _normalize(text)
        fingerprint = _fingerprint(text)
        collector = Collector(text, normalized, fingerprint, analyze, HANDLERS)
        try:
            kind, object_type = collector.statement(raw["stmt"])
            infos.append(collector.build(kind, object_type))
        except Exception as exc:  # fail closed: an analysis bug must not let a statement pass
            infos.append(
                StatementInfo(
                    kind=UNKNOWN,
                    text=text,
                    normalized=normalized,
                    fingerprint=fingerprint,
                    error=f"analysis failed: {type(exc).__name__}: {exc}",
                )
            )
    return tuple(infos)


def _unknown(sql: str, error: str) -> StatementInfo:
    return StatementInfo(kind=UNKNOWN, text=sql, normalized="", fingerprint="", error=error)


def _statement_text(encoded: bytes, raw: dict[str, Any]) -> str:
    # libpg_query reports byte offsets into the UTF-8 text; a missing length means "to the end".
    start = int(raw.get("stmt_location", 0))
    length = raw.get("stmt_len")
    end = len(encoded) if not length else start + int(length)
    return encoded[start:end].decode(errors="replace").strip()


def _normalize(text: str) -> str:
    try:
        return str(pg_parser.normalize(text))
    except pg_parser.ParseError:
        return ""


def _fingerprint(text: str) -> str:
    try:
        return str(pg_parser.fingerprint(text))
    except pg_parser.ParseError:
        return ""

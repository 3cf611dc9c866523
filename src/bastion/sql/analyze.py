"""Split and analyze SQL with libpg_query (through pglast), the server's own grammar.

`analyze(sql)` is the entry point: every statement of a client message, in order, as a
StatementInfo. Results are cached by SQL text in a bounded LRU, so a statement a client repeats
is analyzed once. Anything the parser rejects becomes a single `unknown` statement carrying the
parser's message; a statement whose analysis fails for any other reason becomes `unknown` too.
Callers that must understand a statement treat `unknown` as a reason to refuse.

The parse tree is read as JSON dicts (`parse_sql_json`), never as pglast's Python objects,
which cost an order of magnitude more to build.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from pglast import parser as pg_parser

from bastion.sql import copy, ddl, dml, utility
from bastion.sql.collector import Collector, Handler
from bastion.sql.kinds import UNKNOWN
from bastion.sql.relations import Scope
from bastion.sql.statement import StatementInfo

ANALYSIS_CACHE_SIZE = 8192


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


@lru_cache(maxsize=ANALYSIS_CACHE_SIZE)
def _analyze_cached(sql: str) -> tuple[StatementInfo, ...]:
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

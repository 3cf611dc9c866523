"""Split and classify SQL with libpg_query (through pglast), the server's own grammar.

Results are cached by SQL text in a bounded LRU, so a statement a client repeats is analyzed
once. Anything the parser rejects becomes a single `unknown` statement carrying the parser's
message; callers that must understand a statement treat `unknown` as a reason to refuse.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from pglast import parser as pg_parser

from bastion.sql.statement import StatementInfo

ANALYSIS_CACHE_SIZE = 8192
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def analyze(sql: str) -> tuple[StatementInfo, ...]:
    """Every statement in `sql`, in order. An empty string yields no statements."""
    return _analyze_cached(sql)


@lru_cache(maxsize=ANALYSIS_CACHE_SIZE)
def _analyze_cached(sql: str) -> tuple[StatementInfo, ...]:
    try:
        tree = json.loads(pg_parser.parse_sql_json(sql))
    except pg_parser.ParseError as exc:
        return (
            StatementInfo(kind="unknown", text=sql, normalized="", fingerprint="", error=str(exc)),
        )
    encoded = sql.encode()
    infos: list[StatementInfo] = []
    for raw in tree.get("stmts", []):
        text = _statement_text(encoded, raw)
        infos.append(
            StatementInfo(
                kind=statement_kind(raw["stmt"]),
                text=text,
                normalized=_normalize(text),
                fingerprint=_fingerprint(text),
            )
        )
    return tuple(infos)


def statement_kind(node: dict[str, Any]) -> str:
    """Name a parse-tree statement node: `SelectStmt` -> `select`, `CreateStmt` -> ..."""
    ((node_type, body),) = node.items()
    if node_type == "CreateStmt":
        return "create_table"
    if node_type == "DropStmt":
        return (
            "drop_" + str(body.get("removeType", "OBJECT_UNKNOWN")).removeprefix("OBJECT_").lower()
        )
    name = node_type.removesuffix("Stmt")
    return _CAMEL_BOUNDARY.sub("_", name).lower()


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

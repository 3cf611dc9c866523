"""Session, transaction and wrapper statements: SET/RESET, BEGIN/COMMIT, EXPLAIN, PREPARE,
DECLARE, EXECUTE, CALL, DO, LOAD, ALTER SYSTEM.

EXPLAIN, PREPARE and DECLARE wrap another statement; it is analyzed, listed in `inner` and
folded into the wrapper, so `PREPARE s AS DELETE FROM t` already shows the delete of t. When the
wrapped statement's own text can be cut out of the wrapper's, `inner` carries that text (and its
fingerprint), exactly as if the client had sent it alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pglast import parser as pg_parser

from bastion.sql import flags
from bastion.sql.columns import OTHER
from bastion.sql.functions import setting_flags
from bastion.sql.kinds import classify
from bastion.sql.plpgsql import do_block
from bastion.sql.walker import Node, def_elem_true, def_elems, unwrap

if TYPE_CHECKING:
    from bastion.sql.collector import Collector, Handler
    from bastion.sql.relations import Scope

Starts = Callable[[str], list[int]]  # offsets where a wrapped statement may begin

_TRANSACTION_FLAGS = {
    "TRANS_STMT_BEGIN": flags.TRANSACTION_BEGIN,
    "TRANS_STMT_START": flags.TRANSACTION_BEGIN,
    "TRANS_STMT_COMMIT": flags.TRANSACTION_COMMIT,
    "TRANS_STMT_ROLLBACK": flags.TRANSACTION_ROLLBACK,
    "TRANS_STMT_SAVEPOINT": flags.TRANSACTION_SAVEPOINT,
    "TRANS_STMT_RELEASE": flags.TRANSACTION_RELEASE,
    "TRANS_STMT_ROLLBACK_TO": flags.TRANSACTION_ROLLBACK_TO,
    "TRANS_STMT_PREPARE": flags.TRANSACTION_PREPARE,
    "TRANS_STMT_COMMIT_PREPARED": flags.TRANSACTION_COMMIT_PREPARED,
    "TRANS_STMT_ROLLBACK_PREPARED": flags.TRANSACTION_ROLLBACK_PREPARED,
}
_COMMENTS = frozenset({"C_COMMENT", "SQL_COMMENT"})
_QUERY_STARTS = frozenset({"SELECT", "WITH", "VALUES", "TABLE", "ASCII_40"})


def variable_set(collector: Collector, body: Node, scope: Scope | None) -> None:
    name = str(body.get("name", ""))
    if body.get("kind") == "VAR_SET_MULTI":
        # SET TRANSACTION ... / SET SESSION CHARACTERISTICS AS TRANSACTION ...
        prefix = "default_" if name.upper() == "SESSION CHARACTERISTICS" else ""
        for setting, _ in def_elems(body.get("args")):
            collector.flags.update(setting_flags(prefix + setting))
        _transaction_modes(collector, body.get("args"))
    elif name:
        collector.flags.update(setting_flags(name))


def transaction(collector: Collector, body: Node, scope: Scope | None) -> None:
    flag = _TRANSACTION_FLAGS.get(str(body.get("kind", "")))
    if flag is not None:
        collector.flags.add(flag)
    else:
        collector.flags.add(flags.TRANSACTION_PREFIX + str(body.get("kind", "")).lower())
    _transaction_modes(collector, body.get("options"))


def _transaction_modes(collector: Collector, options: object) -> None:
    """READ WRITE among transaction modes (BEGIN, SET TRANSACTION, SET SESSION ...)."""
    for name, arg in def_elems(options):
        if name == "transaction_read_only" and not def_elem_true(arg):
            collector.flags.add(flags.TRANSACTION_READ_WRITE)


def explain(collector: Collector, body: Node, scope: Scope | None) -> None:
    for name, arg in def_elems(body.get("options")):
        if name == "analyze" and def_elem_true(arg):
            collector.flags.add(flags.EXPLAIN_ANALYZE)
    _wrapped(collector, body.get("query"), scope, _explain_starts)


def prepare(collector: Collector, body: Node, scope: Scope | None) -> None:
    _wrapped(collector, body.get("query"), scope, _after_keyword("AS"))


def declare(collector: Collector, body: Node, scope: Scope | None) -> None:
    _wrapped(collector, body.get("query"), scope, _after_keyword("FOR"))


def call(collector: Collector, body: Node, scope: Scope | None) -> None:
    funccall = body.get("funccall")
    if isinstance(funccall, dict):
        collector.func_call(funccall, OTHER, scope)


def load(collector: Collector, body: Node, scope: Scope | None) -> None:
    collector.flags.add(flags.LOAD)


def alter_system(collector: Collector, body: Node, scope: Scope | None) -> None:
    collector.flags.add(flags.ALTER_SYSTEM)
    setstmt = body.get("setstmt")
    if isinstance(setstmt, dict) and setstmt.get("name"):
        collector.flags.update(setting_flags(str(setstmt["name"])))


def _wrapped(collector: Collector, query: object, scope: Scope | None, starts: Starts) -> None:
    if not isinstance(query, dict):
        return
    unwrapped = unwrap(query)
    expected = classify(*unwrapped)[0] if unwrapped is not None else None
    for start in starts(collector.text):
        infos = collector.analyze_text(collector.text[start:])
        if len(infos) == 1 and infos[0].kind == expected:
            collector.add_inner(infos[0])
            return
    collector.sub_statement(query, scope)


def _tokens(text: str) -> list[pg_parser.Token]:
    try:
        return [token for token in pg_parser.scan(text) if token.name not in _COMMENTS]
    except pg_parser.ParseError:
        return []


def _after_keyword(keyword: str) -> Starts:
    """The wrapped statement follows the first `keyword` outside parentheses."""

    def starts(text: str) -> list[int]:
        depth = 0
        tokens = _tokens(text)
        for index, token in enumerate(tokens):
            if token.name == "ASCII_40":
                depth += 1
            elif token.name == "ASCII_41":
                depth -= 1
            elif depth == 0 and token.name == keyword and index + 1 < len(tokens):
                return [tokens[index + 1].start]
        return []

    return starts


def _explain_starts(text: str) -> list[int]:
    """EXPLAIN [ ( options ) | ANALYZE VERBOSE ] statement; `EXPLAIN (SELECT 1)` is a
    parenthesized query, not an option list, so both readings are offered."""
    tokens = _tokens(text)
    if not tokens or tokens[0].name != "EXPLAIN":
        return []
    candidates: list[int] = []
    index = 1
    if index < len(tokens) and tokens[index].name == "ASCII_40":
        if index + 1 < len(tokens) and tokens[index + 1].name in _QUERY_STARTS:
            candidates.append(tokens[index].start)
        depth = 0
        while index < len(tokens):
            name = tokens[index].name
            depth += name == "ASCII_40"
            depth -= name == "ASCII_41"
            index += 1
            if depth == 0:
                break
    while index < len(tokens) and tokens[index].name in ("ANALYZE", "ANALYSE", "VERBOSE"):
        index += 1
    if index < len(tokens):
        candidates.append(tokens[index].start)
    return candidates


HANDLERS: dict[str, Handler] = {
    "VariableSetStmt": variable_set,
    "TransactionStmt": transaction,
    "ExplainStmt": explain,
    "PrepareStmt": prepare,
    "DeclareCursorStmt": declare,
    "CallStmt": call,
    "DoStmt": do_block,
    "LoadStmt": load,
    "AlterSystemStmt": alter_system,
}

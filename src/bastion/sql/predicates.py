"""Recognizing a WHERE clause that does not filter anything.

`WHERE 1=1`, `WHERE true`, `WHERE 'a'='a'`, `WHERE id = id`, `WHERE x OR true`: an UPDATE or
DELETE carrying one touches every row while looking filtered. The test errs toward flagging:
any predicate that does not depend on the row (no column, no FROM) counts as always true unless
it can be folded to false, and so does a comparison of an expression with itself.
"""

from __future__ import annotations

import enum
from typing import Any

from bastion.sql import literals
from bastion.sql.walker import Node, strings, unwrap


class Truth(enum.Enum):
    TRUE = "true"  # true for every row
    FALSE = "false"  # false (or null) for every row
    CONSTANT = "constant"  # the same for every row, value not worked out: treated as true
    DEPENDS = "depends"  # depends on the row


_MISSING = object()  # a constant whose value is not worked out
_EQUAL_OPS = frozenset({"=", ">=", "<=", "~~", "~~*"})  # x op x is true
_UNEQUAL_OPS = frozenset({"<>", "!=", "<", ">"})  # x op x is false


def where_always_true(where: Any) -> bool:
    return _truth(where) in (Truth.TRUE, Truth.CONSTANT)


def _truth(node: Any) -> Truth:
    if _row_independent(node):
        value = _fold(node)
        if value is True:
            return Truth.TRUE
        if value is False or value is None:
            return Truth.FALSE
        return Truth.CONSTANT
    unwrapped = unwrap(node) if isinstance(node, dict) else None
    if unwrapped is None:
        return Truth.DEPENDS
    kind, body = unwrapped
    if kind == "BoolExpr":
        return _bool_expr(body)
    if kind == "A_Expr":
        return _same_operands(body)
    if kind == "BooleanTest":
        inner = _truth(body.get("arg"))
        test = body.get("booltesttype")
        if test in ("IS_TRUE", "IS_NOT_FALSE"):
            return inner
        if test in ("IS_FALSE", "IS_NOT_TRUE"):
            return _negate(inner)
    return Truth.DEPENDS


def _bool_expr(body: Node) -> Truth:
    args = [_truth(arg) for arg in body.get("args", [])]
    op = body.get("boolop")
    if op == "NOT_EXPR":
        return _negate(args[0]) if args else Truth.DEPENDS
    if op == "AND_EXPR":
        if Truth.FALSE in args:
            return Truth.FALSE
        if all(arg is Truth.TRUE for arg in args):
            return Truth.TRUE
        if all(arg in (Truth.TRUE, Truth.CONSTANT) for arg in args):
            return Truth.CONSTANT
        return Truth.DEPENDS
    if op == "OR_EXPR":
        if Truth.TRUE in args:
            return Truth.TRUE
        if all(arg is Truth.FALSE for arg in args):
            return Truth.FALSE
        if Truth.CONSTANT in args:
            # `x = 1 OR <something row-independent>`: true for all rows whenever it is true.
            return Truth.CONSTANT
    return Truth.DEPENDS


def _negate(truth: Truth) -> Truth:
    if truth is Truth.TRUE:
        return Truth.FALSE
    if truth is Truth.FALSE:
        return Truth.TRUE
    return truth


def _same_operands(body: Node) -> Truth:
    """`x = x`, `x >= x`, `x IN (a, x)`, `x IS NOT DISTINCT FROM x`."""
    kind = body.get("kind")
    ops = strings(body.get("name"))
    left, right = body.get("lexpr"), body.get("rexpr")
    if left is None or right is None:
        return Truth.DEPENDS
    if kind == "AEXPR_IN" and ops == ["="]:
        items = right.get("List", {}).get("items", []) if isinstance(right, dict) else []
        if any(_same(left, item) for item in items):
            return Truth.TRUE
        return Truth.DEPENDS
    if not _same(left, right):
        return Truth.DEPENDS
    if kind == "AEXPR_NOT_DISTINCT":
        return Truth.TRUE
    if kind == "AEXPR_DISTINCT":
        return Truth.FALSE
    if kind in ("AEXPR_OP", "AEXPR_LIKE", "AEXPR_ILIKE") and len(ops) == 1:
        if ops[0] in _EQUAL_OPS:
            return Truth.TRUE
        if ops[0] in _UNEQUAL_OPS:
            return Truth.FALSE
    return Truth.DEPENDS


def _same(left: Any, right: Any) -> bool:
    return bool(_without_locations(left) == _without_locations(right))


def _without_locations(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_locations(v) for k, v in node.items() if k != "location"}
    if isinstance(node, list):
        return [_without_locations(v) for v in node]
    return node


def _row_independent(node: Any) -> bool:
    """True when nothing in `node` can differ from one row to the next."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("ColumnRef", "RangeVar", "fromClause", "CurrentOfExpr"):
                return False
            if isinstance(value, (dict, list)) and not _row_independent(value):
                return False
        return True
    if isinstance(node, list):
        return all(_row_independent(item) for item in node)
    return True


def _fold(node: Any) -> object:
    """The constant value of a row-independent expression: a bool, int, float or str; None for
    NULL; `_MISSING` when it is not worked out here."""
    unwrapped = unwrap(node) if isinstance(node, dict) else None
    if unwrapped is None:
        return _MISSING
    kind, body = unwrapped
    if kind == "A_Const":
        return _const(body)
    if kind == "TypeCast":
        return _cast(_fold(body.get("arg")), strings(body.get("typeName", {}).get("names")))
    if kind == "BoolExpr":
        return _fold_bool(body)
    if kind == "NullTest":
        value = _fold(body.get("arg"))
        if value is _MISSING:
            return _MISSING
        is_null = value is None
        return is_null if body.get("nulltesttype") == "IS_NULL" else not is_null
    if kind == "A_Expr":
        return _fold_expr(body)
    return _MISSING


def _const(body: Node) -> object:
    literals.note_read()
    if body.get("isnull"):
        return None
    for key in ("ival", "fval", "boolval", "sval", "bsval"):
        if key in body:
            inner = body[key]
            value = inner.get(key) if isinstance(inner, dict) else None
            if key == "ival":
                return int(value or 0)
            if key == "fval":
                try:
                    return float(value or 0)
                except ValueError:
                    return _MISSING
            if key == "boolval":
                return bool(value)
            return str(value or "")
    return _MISSING


def _cast(value: object, type_names: list[str]) -> object:
    if value is _MISSING or value is None or not type_names:
        return value
    target = type_names[-1]
    if target == "bool" and isinstance(value, str):
        text = value.strip().lower()
        if text in ("t", "true", "y", "yes", "on", "1"):
            return True
        if text in ("f", "false", "n", "no", "off", "0"):
            return False
        return _MISSING
    if target in ("int2", "int4", "int8", "numeric", "float4", "float8"):
        return _number(value)
    if target in ("text", "varchar", "bpchar", "name"):
        return str(value) if not isinstance(value, bool) else _MISSING
    return value


def _fold_bool(body: Node) -> object:
    values = [_fold(arg) for arg in body.get("args", [])]
    op = body.get("boolop")
    if op == "NOT_EXPR":
        return (not values[0]) if values and isinstance(values[0], bool) else _MISSING
    if op == "AND_EXPR":
        if False in values:
            return False
        return True if all(v is True for v in values) else _MISSING
    if op == "OR_EXPR":
        if True in values:
            return True
        return False if all(v is False for v in values) else _MISSING
    return _MISSING


def _fold_expr(body: Node) -> object:
    kind = body.get("kind")
    ops = strings(body.get("name"))
    if kind == "AEXPR_OP" and ops == ["-"] and body.get("lexpr") is None:
        value = _number(_fold(body.get("rexpr")))
        return -value if isinstance(value, (int, float)) else _MISSING
    left = _fold(body.get("lexpr"))
    if kind == "AEXPR_IN":
        right_items = body.get("rexpr", {}).get("List", {}).get("items", [])
        values = [_fold(item) for item in right_items]
        if left is _MISSING or _MISSING in values:
            return _MISSING
        found = any(_compare("=", left, v) is True for v in values)
        return found if ops == ["="] else not found
    right = _fold(body.get("rexpr"))
    if kind == "AEXPR_OP" and len(ops) == 1:
        return _compare(ops[0], left, right)
    return _MISSING


def _number(value: object) -> object:
    if isinstance(value, bool):
        return _MISSING
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return _MISSING
    return _MISSING


def _compare(op: str, left: object, right: object) -> object:
    if left is _MISSING or right is _MISSING:
        return _MISSING
    if left is None or right is None:
        return None
    if isinstance(left, (int, float)) or isinstance(right, (int, float)):
        left, right = _number(left), _number(right)
        if left is _MISSING or right is _MISSING:
            return _MISSING
    elif type(left) is not type(right):
        return _MISSING
    elif isinstance(left, str) and op not in ("=", "<>", "!="):
        return _MISSING  # ordering of text depends on the collation
    try:
        if op == "=":
            return left == right
        if op in ("<>", "!="):
            return left != right
        if op == "<":
            return left < right  # type: ignore[operator]
        if op == ">":
            return left > right  # type: ignore[operator]
        if op == "<=":
            return left <= right  # type: ignore[operator]
        if op == ">=":
            return left >= right  # type: ignore[operator]
    except TypeError:
        return _MISSING
    return _MISSING

"""Which column references let a client learn values it is not shown (the inference guard).

A column compared with anything but a constant, fed to a function inside a condition, or used
to order or group rows reveals something about its values through which rows come back and in
what order, even when the column itself is masked in the results. The collector walks every
statement once; this module only answers its questions about single parse-tree nodes: is this
condition one of the few harmless forms, and which select-list entries does an ORDER BY, GROUP
BY or DISTINCT ON name by position or alias. It records nothing itself.

Harmless forms, with the bare column on either side and a constant or `$n` on the other:
`=`, `<>`, `IS [NOT] DISTINCT FROM`, `[NOT] IN (list)`, `= ANY (array)`, `<> ALL (array)`,
`IS [NOT] NULL`, `IS [NOT] TRUE|FALSE|UNKNOWN`, and a bare boolean column. Each tells only
whether the value equals something the client already wrote, as `IS DISTINCT FROM` does.
"""

from __future__ import annotations

from typing import Any

from bastion.sql import literals
from bastion.sql.walker import Node, body_of, list_items

# (A_Expr kind, operator) pairs that test (in)equality with the right-hand side.
_EQUALITY = frozenset(
    {
        ("AEXPR_OP", "="),
        ("AEXPR_OP", "<>"),
        ("AEXPR_DISTINCT", "="),
        ("AEXPR_NOT_DISTINCT", "="),
        ("AEXPR_IN", "="),
        ("AEXPR_IN", "<>"),
        ("AEXPR_OP_ANY", "="),
        ("AEXPR_OP_ALL", "<>"),
    }
)
_LISTS = frozenset({"AEXPR_IN"})
_ARRAYS = frozenset({"AEXPR_OP_ANY", "AEXPR_OP_ALL"})


def is_bare_column(node: Any) -> bool:
    """A plain column reference (`ssn`, `c.ssn`), not a star and not inside anything."""
    fields = _fields(node)
    return bool(fields) and "String" in fields[-1]


def unqualified_name(node: Any) -> str | None:
    """The name of an unqualified column reference (`x`, not `t.x`), else None."""
    fields = _fields(node)
    if len(fields) == 1 and "String" in fields[0]:
        return str(fields[0]["String"].get("sval", ""))
    return None


def is_constant(node: Any) -> bool:
    """A literal or a parameter, possibly cast or signed (`'x'`, `$1`, `$1::int`, `-5`)."""
    while type(node) is dict and len(node) == 1:
        ((node_type, body),) = node.items()
        if node_type in ("A_Const", "ParamRef"):
            return True
        if node_type == "TypeCast":
            node = body.get("arg")
        elif node_type == "A_Expr" and body.get("lexpr") is None and _operator(body) in ("+", "-"):
            node = body.get("rexpr")
        else:
            return False
    return False


def harmless_condition(node_type: str, body: Node) -> bool:
    """Whether a condition node is one of the harmless forms (see the module docstring)."""
    if node_type == "A_Expr":
        kind = body.get("kind", "AEXPR_OP")
        if (kind, _operator(body)) not in _EQUALITY:
            return False
        left, right = body.get("lexpr"), body.get("rexpr")
        if kind in _LISTS:
            return is_bare_column(left) and all(is_constant(item) for item in list_items(right))
        if kind in _ARRAYS:
            return is_bare_column(left) and _constant_array(right)
        if is_bare_column(left):
            return is_constant(right)
        return is_bare_column(right) and is_constant(left)
    if node_type in ("NullTest", "BooleanTest"):
        return is_bare_column(body.get("arg"))
    return False


def harmless_simple_case(body: Node) -> bool:
    """`CASE col WHEN 'a' THEN ... WHEN $1 THEN ... END`: equality with constants only."""
    if not is_bare_column(body.get("arg")):
        return False
    for when in body.get("args") or ():
        case_when = body_of(when, "CaseWhen")
        if case_when is None or not is_constant(case_when.get("expr")):
            return False
    return True


def output_positions(targets: list[Any], items: Any, label: str, found: dict[int, str]) -> None:
    """Add to `found` (position -> label) the select-list entries that ORDER BY, GROUP BY or
    DISTINCT ON `items` name by number (`ORDER BY 1`) or by output name (`ORDER BY x` after
    `ssn AS x`): those entries are ordered or grouped by, whatever their expression."""
    names: list[str | None] | None = None
    for item in list_items(items):
        kind, body = _node(item)
        if kind == "SortBy":
            kind, body = _node(body.get("node"))
        if kind == "ColumnRef":
            fields = body.get("fields") or []
            if len(fields) == 1 and "String" in fields[0]:
                if names is None:
                    names = [output_name(target) for target in targets]
                name = fields[0]["String"].get("sval")
                for position, output in enumerate(names):
                    if output == name:
                        found.setdefault(position, label)
        elif kind == "A_Const":
            literals.note_read()
            number = body.get("ival")
            if isinstance(number, dict):
                position = int(number.get("ival", 0)) - 1
                if 0 <= position < len(targets):
                    found.setdefault(position, label)
        elif kind == "GroupingSet":  # ROLLUP (1, 2), GROUPING SETS ((x), ())
            output_positions(targets, body.get("content"), label, found)
        elif kind == "RowExpr":  # a parenthesized group inside ROLLUP or GROUPING SETS
            output_positions(targets, body.get("args"), label, found)


def output_name(target: Any) -> str | None:
    """The name a select-list entry's output column gets: its alias, or the column's name."""
    res = body_of(target, "ResTarget")
    if res is None:
        return None
    if res.get("name"):
        return str(res["name"])
    fields = _fields(res.get("val"))
    if fields and "String" in fields[-1]:
        return str(fields[-1]["String"].get("sval", ""))
    return None


def _node(value: Any) -> tuple[str, Node]:
    """(type, body) of a wrapped node; ("", {}) for anything else."""
    if type(value) is dict and len(value) == 1:
        ((kind, body),) = value.items()
        if type(body) is dict:
            return kind, body
    return "", {}


def _fields(node: Any) -> list[Any]:
    """The name parts of a ColumnRef node (String or A_Star nodes); [] for anything else."""
    column = body_of(node, "ColumnRef")
    fields = column.get("fields") if column is not None else None
    return fields if isinstance(fields, list) else []


def _operator(body: Node) -> str:
    """The operator's name without its schema (`OPERATOR(pg_catalog.=)` is `=`)."""
    names = body.get("name") or ()
    if not names:
        return ""
    last = names[-1].get("String") if isinstance(names[-1], dict) else None
    if last is None or (len(names) == 2 and _schema(names[0]) != "pg_catalog") or len(names) > 2:
        return "?"
    return str(last.get("sval", ""))


def _schema(name: Any) -> str | None:
    string = body_of(name, "String")
    return str(string.get("sval", "")) if string is not None else None


def _constant_array(node: Any) -> bool:
    """`$1`, `'{a,b}'`, `ARRAY['a', $2]`."""
    if is_constant(node):
        return True
    array = body_of(node, "A_ArrayExpr")
    return array is not None and all(is_constant(item) for item in array.get("elements") or ())

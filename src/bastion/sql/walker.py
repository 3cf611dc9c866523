"""Reading libpg_query's JSON parse tree: plain dicts and lists, no pglast AST objects.

The JSON form wraps a node in a one-key dict named after its type (`{"SelectStmt": {...}}`)
wherever the C field is a generic `Node *`; fields declared with a concrete struct type
(`RangeVar *relation`, `WithClause *withClause`, ...) hold the struct unwrapped. Fields that
equal their zero value (false, 0, empty string, NULL) are omitted. This module owns those
conventions so that the rest of the analyzer can ask simple questions.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bastion.sql import literals

Node = dict[str, Any]


def unwrap(node: Node) -> tuple[str, Node] | None:
    """(`"SelectStmt"`, body) for a wrapped node; None for an unwrapped struct."""
    if len(node) == 1:
        for key, value in node.items():
            if key[:1].isupper() and isinstance(value, dict):
                return key, value
    return None


def body_of(node: Any, expected: str) -> Node | None:
    """The body of `node` when it is a wrapped node of type `expected`."""
    if isinstance(node, dict):
        body = node.get(expected)
        if isinstance(body, dict) and len(node) == 1:
            return body
    return None


def strings(items: Any) -> list[str]:
    """The values of a list of `String` nodes (names, qualified names)."""
    if not isinstance(items, list):
        return []
    out: list[str] = []
    for item in items:
        if isinstance(item, dict):
            value = item.get("String")
            if isinstance(value, dict):
                out.append(str(value.get("sval", "")))
    return out


def list_items(node: Any) -> list[Any]:
    """The items of a `List` node, or the list itself."""
    if isinstance(node, list):
        return node
    body = body_of(node, "List")
    if body is not None:
        items = body.get("items", [])
        return items if isinstance(items, list) else []
    return []


def string_constant(node: Any) -> str | None:
    """The text of a string literal (`A_Const` sval or a `String` node), casts removed."""
    while True:
        cast = body_of(node, "TypeCast")
        if cast is None:
            break
        node = cast.get("arg")
    const = body_of(node, "A_Const")
    if const is not None:
        literals.note_read()
        sval = const.get("sval")
        return str(sval.get("sval", "")) if isinstance(sval, dict) else None
    string = body_of(node, "String")
    if string is not None:
        return str(string.get("sval", ""))
    return None


def def_elems(options: Any) -> Iterator[tuple[str, Any]]:
    """(defname, arg) for each `DefElem` of an options list."""
    if not isinstance(options, list):
        return
    for option in options:
        elem = body_of(option, "DefElem")
        if elem is not None:
            yield str(elem.get("defname", "")), elem.get("arg")


def def_elem_string(arg: Any) -> str | None:
    """A DefElem argument read as text (a `String`, a constant, or a one-item list)."""
    text = string_constant(arg)
    if text is not None:
        return text
    items = list_items(arg)
    if len(items) == 1:
        return string_constant(items[0])
    return None


def def_elem_true(arg: Any) -> bool:
    """A DefElem argument read as a boolean; an absent argument means true (`ANALYZE`)."""
    if arg is None:
        return True
    boolean = body_of(arg, "Boolean")
    if boolean is not None:
        return bool(boolean.get("boolval", False))
    integer = body_of(arg, "Integer")
    if integer is not None:
        return bool(integer.get("ival", 0))
    const = body_of(arg, "A_Const")
    if const is not None:
        for key in ("ival", "boolval"):
            if key in const:
                inner = const[key]
                return bool(inner.get(key)) if isinstance(inner, dict) else bool(inner)
    text = string_constant(arg)
    if text is not None:
        return text.lower() in ("true", "on", "yes", "1", "t", "y")
    return True

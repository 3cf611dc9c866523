"""CEL conditions: compiling a rule's `when` once at load and evaluating it per decision.

This module owns the CEL dialect policies may use: the variables (identity, source, target,
time, statement), the `ip_in` helper, load-time checks that turn a typo into a load error
instead of a condition that silently never holds, and which variable fields each condition
reads. It never decides what a failed evaluation means: `Outcome` reports it and the engine
applies the fail-closed rule.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import cel

# The CEL library logs every failing custom-function call to its `cel` logger; without a
# handler anywhere, Python would print those to stderr. The failure is an evaluation error the
# engine handles (and explain reports), so it needs no stray line of its own.
logging.getLogger("cel").addHandler(logging.NullHandler())

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The variables a condition may use and the fields of each. Session rules get all but
# `statement`. Kept here, next to the checks that rely on them; `context` builds the values.
VARIABLE_FIELDS: Mapping[str, frozenset[str]] = {
    "identity": frozenset({"name", "groups", "kind", "auth_method"}),
    "source": frozenset({"ip", "port", "tls", "tls_version"}),
    "target": frozenset({"name", "labels"}),
    "time": frozenset({"hour", "minute", "weekday", "date"}),
    "statement": frozenset(
        {
            "kind",
            "tables",
            "tables_read",
            "tables_written",
            "columns",
            "functions",
            "has_where",
            "where_always_true",
            "flags",
            "object_type",
            "modifying_cte",
            "dynamic_sql",
            "copy",
        }
    ),
}
CONNECTION_VARIABLES = frozenset({"identity", "source", "target", "time"})
STATEMENT_VARIABLES = CONNECTION_VARIABLES | {"statement"}

# Which fields of each variable a condition reads; None means the whole variable (a method
# call on it, indexing, `in`, or anything the scan below cannot read as a plain field access).
FieldUse = Mapping[str, frozenset[str] | None]

_UNDEFINED_RE = re.compile(r"Undefined variable or function: '([^']*)'")
_CEL_POSITION_RE = re.compile(r"ERROR: <input>:(\d+:\d+): (.*)")
# A tokenizer just good enough to find identifiers outside strings and comments. CEL raw
# strings (r'...') have no escapes, so they get their own alternatives.
_TOKEN_RE = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>//[^\n]*)
  | (?P<raw>[bB]?[rR][bB]?(?:'''.*?'''|\"\"\".*?\"\"\"|'[^'\n]*'|"[^"\n]*"))
  | (?P<string>[bB]?(?:'''(?:\\.|[^\\])*?'''|\"\"\"(?:\\.|[^\\])*?\"\"\"
                    |'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*"))
  | (?P<number>[0-9][0-9A-Za-z_.]*)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>.)
    """,
    re.VERBOSE | re.DOTALL,
)


class ConditionError(ValueError):
    """A condition does not compile or refers to something that does not exist."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of evaluating a condition: `value` when it gave a boolean, else `error`."""

    value: bool | None
    error: str | None = None


@dataclass(frozen=True, eq=False)
class Condition:
    """A compiled `when` expression. Compile with `compile_condition`."""

    source: str
    program: cel.Program
    uses: FieldUse

    def evaluate(self, context: cel.Context) -> Outcome:
        try:
            result = self.program.execute(context)
        except Exception as exc:  # every CEL failure is a policy outcome, never a crash
            return Outcome(None, _error_text(exc))
        if isinstance(result, bool):
            return Outcome(result)
        return Outcome(None, f"the condition gave {type(result).__name__}, not a boolean")


def compile_condition(source: str, variables: frozenset[str]) -> Condition:
    """Compile `source`, checking that it only uses `variables` and their known fields.

    Raises ConditionError with a one-line message (line:column and what is wrong).
    """
    return _compile(source, variables)


@lru_cache(maxsize=1024)
def _compile(source: str, variables: frozenset[str]) -> Condition:
    if not source.strip():
        raise ConditionError("the condition is empty")
    try:
        program = cel.compile(source)
    except Exception as exc:
        raise ConditionError(_compile_error_text(exc)) from None
    uses = field_use(source)
    bound = _macro_variables(source)
    for name in program.variables():
        if name in variables or name in bound:
            continue
        if name in VARIABLE_FIELDS:
            raise ConditionError(f"{name!r} is not available here")
        raise ConditionError(f"unknown variable {name!r}; use one of {_names(variables)}")
    for name, fields in uses.items():
        if name not in variables or fields is None:
            continue
        unknown = sorted(fields - VARIABLE_FIELDS[name])
        if unknown:
            raise ConditionError(
                f"{name} has no field {unknown[0]!r}; it has {_names(VARIABLE_FIELDS[name])}"
            )
    condition = Condition(source, program, uses)
    _dry_run(condition, variables)
    return condition


def _dry_run(condition: Condition, variables: frozenset[str]) -> None:
    """Evaluate once with sample values so an unknown function is a load error.

    Only "undefined" errors count: anything else may depend on the values of a real statement.
    """
    sample = {name: value for name, value in SAMPLE_VALUES.items() if name in variables}
    outcome = condition.evaluate(cel.Context(variables=sample, functions=dict(FUNCTIONS)))
    if outcome.error is None:
        return
    match = _UNDEFINED_RE.search(outcome.error)
    if match is not None:
        raise ConditionError(
            f"unknown function {match.group(1)!r}, or it does not take these argument types"
        )


def field_use(source: str) -> dict[str, frozenset[str] | None]:
    """Which fields of each policy variable `source` reads, from its tokens.

    A field counts when the variable is followed by `.field` and no call parenthesis; any
    other use of the variable (a method call such as `source.ip_in(...)`, `[...]`, `in`) marks
    the whole variable as used. Reading too much only costs time; the engine retries with every
    field when a narrowed evaluation fails, so reading too little cannot change an outcome.
    """
    tokens = [
        (kind, text)
        for kind, text in _tokens(source)
        if kind not in ("space", "comment")  # comments and blanks separate nothing in CEL
    ]
    uses: dict[str, set[str] | None] = {}
    for index, (kind, text) in enumerate(tokens):
        if kind != "ident" or text not in VARIABLE_FIELDS:
            continue
        if index > 0 and tokens[index - 1] == ("punct", "."):
            continue  # a field that happens to share a variable's name
        following = tokens[index + 1 : index + 4]
        is_field = (
            len(following) >= 2
            and following[0] == ("punct", ".")
            and following[1][0] == "ident"
            and (len(following) < 3 or following[2] != ("punct", "("))
        )
        current = uses.get(text, set())
        if not is_field or current is None:
            uses[text] = None
        else:
            current.add(following[1][1])
            uses[text] = current
    return {name: None if fields is None else frozenset(fields) for name, fields in uses.items()}


def merge_field_use(uses: Iterable[FieldUse]) -> dict[str, frozenset[str] | None]:
    """The union of several conditions' field use."""
    merged: dict[str, frozenset[str] | None] = {}
    for use in uses:
        for name, fields in use.items():
            if name in merged and merged[name] is None:
                continue
            if fields is None:
                merged[name] = None
            else:
                merged[name] = (merged.get(name) or frozenset()) | fields
    return merged


def _tokens(source: str) -> Iterable[tuple[str, str]]:
    for match in _TOKEN_RE.finditer(source):
        kind = match.lastgroup or "punct"
        yield ("string" if kind == "raw" else kind), match.group()


def _macro_variables(source: str) -> set[str]:
    """Names bound by comprehension macros: the `x` of `list.exists(x, ...)`."""
    tokens = [t for t in _tokens(source) if t[0] not in ("space", "comment")]
    bound: set[str] = set()
    for index in range(len(tokens) - 4):
        dot, macro, paren, name, comma = tokens[index : index + 5]
        if (
            dot == ("punct", ".")
            and macro[0] == "ident"
            and macro[1] in ("all", "exists", "exists_one", "existsOne", "map", "filter")
            and paren == ("punct", "(")
            and name[0] == "ident"
            and comma == ("punct", ",")
        ):
            bound.add(name[1])
    return bound


def _names(names: Iterable[str]) -> str:
    return ", ".join(sorted(names))


def _compile_error_text(exc: Exception) -> str:
    """The first CEL parse error as `line:column: message`, without the caret drawing."""
    text = str(exc)
    match = _CEL_POSITION_RE.search(text)
    if match is not None:
        return f"{match.group(1)}: {match.group(2).strip()}"
    return text.splitlines()[0] if text else type(exc).__name__


def _error_text(exc: Exception) -> str:
    text = str(exc).strip()
    if isinstance(exc, KeyError):
        return f"no such key: {text}"
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


# -- ip_in ---------------------------------------------------------------------------------


def ip_in(address: Any, cidrs: Any) -> bool:
    """Whether `address` lies in `cidrs` (one CIDR string or a list of them).

    `address` is an IP address string or, when called as a method on `source`
    (`source.ip_in("10.0.0.0/8")`), the source map, whose `ip` is used. IPv4-mapped IPv6
    addresses (::ffff:10.1.2.3, as a dual-stack socket reports IPv4 clients) are compared as
    IPv4. Raises ValueError for a malformed address or CIDR, which makes the condition fail.
    """
    if isinstance(address, Mapping):
        address = address.get("ip")
    if not isinstance(address, str):
        raise ValueError("ip_in needs an IP address string or the source map")
    ip = _parse_address(address)
    networks: Sequence[Any] = [cidrs] if isinstance(cidrs, str) else cidrs
    if not isinstance(networks, Sequence) or not networks:
        raise ValueError("ip_in needs a CIDR string or a non-empty list of them")
    for cidr in networks:
        if not isinstance(cidr, str):
            raise ValueError("ip_in needs CIDR strings")
        network = _parse_network(cidr)
        if ip.version == network.version and ip in network:
            return True
    return False


@lru_cache(maxsize=4096)
def _parse_address(text: str) -> IpAddress:
    ip = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone (fe80::1%eth0)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@lru_cache(maxsize=1024)
def _parse_network(text: str) -> IpNetwork:
    return ipaddress.ip_network(text, strict=False)


FUNCTIONS: Mapping[str, Any] = {"ip_in": ip_in}

# Values of the right type for every field, for the load-time dry run.
SAMPLE_VALUES: Mapping[str, dict[str, Any]] = {
    "identity": {"name": "sample", "groups": ["sample"], "kind": "human", "auth_method": "x"},
    "source": {"ip": "192.0.2.1", "port": 50000, "tls": True, "tls_version": "TLSv1.3"},
    "target": {"name": "sample", "labels": {"environment": "sample"}},
    "time": {"hour": 12, "minute": 0, "weekday": 0, "date": "2024-01-01"},
    "statement": {
        "kind": "select",
        "tables": ["public.sample"],
        "tables_read": ["public.sample"],
        "tables_written": ["public.sample"],
        "columns": ["public.sample.id"],
        "functions": ["lower"],
        "has_where": True,
        "where_always_true": False,
        "flags": ["sample"],
        "object_type": "table",
        "modifying_cte": False,
        "dynamic_sql": False,
        "copy": {"direction": "to", "target": "stdout", "path": "", "query": False},
    },
}

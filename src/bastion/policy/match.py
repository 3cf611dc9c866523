"""Matching: `match` blocks compiled into checks that the engine and explain share.

Globs are compiled once per rule (exact names in a set, the rest in one regular expression).
Multi-valued statement facts (tables, columns, functions) are matched fail-closed: an allow
rule matches only when every table (column, function) of the statement matches one of its
patterns, and there is at least one; a deny or require_approval rule matches when any one
does. Names the analyzer could not pin down (a table without schema, a column without table,
`*`) match a more specific pattern only for deny and require_approval rules.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from bastion.pipeline.context import ConnectionContext
from bastion.policy.model import ConnectionMatch, StatementMatch
from bastion.sql.statement import ColumnRef, StatementInfo, TableRef

T = TypeVar("T")

_MAGIC = re.compile(r"[*?\[]")


class GlobSet:
    """Glob patterns (fnmatch syntax, case-sensitive) matched as one."""

    __slots__ = ("_exact", "_regex", "patterns")

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        self._exact = frozenset(p for p in self.patterns if not _MAGIC.search(p))
        globs = [fnmatch.translate(p) for p in self.patterns if _MAGIC.search(p)]
        self._regex = re.compile("|".join(globs)) if globs else None

    def __call__(self, value: str) -> bool:
        if value in self._exact:
            return True
        return self._regex is not None and self._regex.match(value) is not None


@dataclass(frozen=True, slots=True)
class Check(Generic[T]):
    """One key of a `match` block: its patterns, its test, and the value it looks at."""

    field: str
    patterns: tuple[str, ...]
    test: Callable[[T], bool]
    actual: Callable[[T], object]


@dataclass(frozen=True, slots=True)
class CheckResult:
    """A check applied to one connection or statement, for explain."""

    field: str
    ok: bool
    patterns: tuple[str, ...]
    actual: object


def run_checks(checks: Sequence[Check[T]], value: T) -> tuple[CheckResult, ...]:
    return tuple(CheckResult(c.field, c.test(value), c.patterns, c.actual(value)) for c in checks)


def all_pass(checks: Sequence[Check[T]], value: T) -> bool:
    # A plain loop: all() over a generator costs more on this hot path.
    for check in checks:  # noqa: SIM110
        if not check.test(value):
            return False
    return True


# -- connection ---------------------------------------------------------------------------


def connection_checks(match: ConnectionMatch) -> tuple[Check[ConnectionContext], ...]:
    checks: list[Check[ConnectionContext]] = []
    if match.users is not None:
        users = GlobSet(match.users)
        checks.append(
            Check("users", users.patterns, lambda c: users(c.identity.name), _identity_name)
        )
    if match.groups is not None:
        groups = GlobSet(match.groups)
        checks.append(
            Check(
                "groups",
                groups.patterns,
                lambda c: any(groups(g) for g in c.identity.groups),
                lambda c: list(c.identity.groups),
            )
        )
    if match.kinds is not None:
        kinds = frozenset(str(kind) for kind in match.kinds)
        checks.append(
            Check(
                "kinds",
                tuple(sorted(kinds)),
                lambda c: str(c.identity.kind) in kinds,
                lambda c: str(c.identity.kind),
            )
        )
    if match.targets is not None:
        targets = GlobSet(match.targets)
        checks.append(Check("targets", targets.patterns, lambda c: targets(c.target), _target))
    if match.target_labels is not None:
        labels = {key: GlobSet([value]) for key, value in match.target_labels.items()}
        checks.append(
            Check(
                "target_labels",
                tuple(f"{key}={value}" for key, value in match.target_labels.items()),
                lambda c: _labels_match(labels, c.target_labels),
                lambda c: dict(c.target_labels),
            )
        )
    return tuple(checks)


def _identity_name(context: ConnectionContext) -> str:
    return context.identity.name


def _target(context: ConnectionContext) -> str:
    return context.target


def _labels_match(wanted: Mapping[str, GlobSet], labels: Mapping[str, str]) -> bool:
    for key, globs in wanted.items():
        value = labels.get(key)
        if value is None or not globs(value):
            return False
    return True


# -- statement ----------------------------------------------------------------------------


class NamePatterns:
    """Patterns on `name` or `schema.name` (tables, functions).

    An unqualified pattern matches the name in any schema. A qualified pattern matches a
    qualified name when both parts match; it matches an unqualified name (whose schema the
    search_path decides) only when `loose`.
    """

    __slots__ = ("_any_schema", "_qualified", "patterns")

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        self._any_schema = GlobSet(p for p in self.patterns if "." not in p)
        self._qualified = tuple(
            (GlobSet([schema]), GlobSet([name]))
            for schema, name in (p.split(".", 1) for p in self.patterns if "." in p)
        )

    def match(self, schema: str | None, name: str, loose: bool) -> bool:
        if self._any_schema(name):
            return True
        for schema_glob, name_glob in self._qualified:
            if name_glob(name) and (loose if schema is None else schema_glob(schema)):
                return True
        return False


class ColumnPatterns:
    """Patterns on `column`, `table.column` or `schema.table.column`.

    `*` (SELECT *) and a column whose table the analyzer could not resolve match a more
    specific pattern only when `loose`.
    """

    __slots__ = ("_entries", "patterns")

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        entries: list[tuple[NamePatterns | None, GlobSet]] = []
        for pattern in self.patterns:
            table, _, column = pattern.rpartition(".")
            # `*.email`: any table, including one the analyzer could not resolve.
            any_table = table in ("", "*")
            entries.append((None if any_table else NamePatterns([table]), GlobSet([column])))
        self._entries = tuple(entries)

    def match(self, column: ColumnRef, loose: bool) -> bool:
        for table_patterns, column_glob in self._entries:
            if not (column_glob(column.name) or (loose and column.name == "*")):
                continue
            if table_patterns is None:
                return True
            if column.table is None:
                if loose:
                    return True
                continue
            if table_patterns.match(column.table.schema, column.table.name, loose):
                return True
        return False


def _quantified(
    items: Callable[[StatementInfo], Sequence[T]],
    matches: Callable[[T, bool], bool],
    strict: bool,
) -> Callable[[StatementInfo], bool]:
    if strict:

        def every(statement: StatementInfo) -> bool:
            values = items(statement)
            return bool(values) and all(matches(value, False) for value in values)

        return every

    def some(statement: StatementInfo) -> bool:
        return any(matches(value, True) for value in items(statement))

    return some


def statement_tables(statement: StatementInfo) -> tuple[TableRef, ...]:
    return statement.tables_read + statement.tables_written


def _split_function(name: str) -> tuple[str | None, str]:
    schema, _, bare = name.rpartition(".")
    return (schema or None), bare


def statement_checks(match: StatementMatch, strict: bool) -> tuple[Check[StatementInfo], ...]:
    """Checks for the statement keys; `strict` for allow rules (see the module docstring)."""
    checks: list[Check[StatementInfo]] = []
    if match.statements is not None:
        kinds = GlobSet(match.statements)
        checks.append(
            Check("statements", kinds.patterns, lambda s: kinds(s.kind), lambda s: s.kind)
        )
    if match.tables is not None:
        tables = NamePatterns(match.tables)
        checks.append(
            Check(
                "tables",
                tables.patterns,
                _quantified(
                    statement_tables, lambda t, loose: tables.match(t.schema, t.name, loose), strict
                ),
                lambda s: [t.qualified for t in statement_tables(s)],
            )
        )
    if match.columns is not None:
        columns = ColumnPatterns(match.columns)
        checks.append(
            Check(
                "columns",
                columns.patterns,
                _quantified(lambda s: s.columns, columns.match, strict),
                lambda s: [_column_text(c) for c in s.columns],
            )
        )
    if match.functions is not None:
        functions = NamePatterns(match.functions)
        checks.append(
            Check(
                "functions",
                functions.patterns,
                _quantified(
                    lambda s: s.functions,
                    lambda f, loose: functions.match(*_split_function(f.lower()), loose),
                    strict,
                ),
                lambda s: list(s.functions),
            )
        )
    return tuple(checks)


def _column_text(column: ColumnRef) -> str:
    return f"{column.table.qualified}.{column.name}" if column.table else column.name

"""Patterns users add for their own sensitive values (`EMP-\\d{6}`, internal account ids).

This module owns `UserPattern` and its compilation with google-re2, whose matching time is
linear in the input whatever the pattern: a pattern someone writes in configuration can never
stall a session on a crafted value (no catastrophic backtracking, no backreferences or
lookarounds to abuse). Patterns run only over values of scanned columns, after the built-in
Hyperscan pass. Python's `re` is never used on data.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import re2  # type: ignore[import-untyped]

from bastion.errors import ConfigError
from bastion.masking.classes import SensitiveClass

_MAX_MEMORY = 8 << 20


@dataclass(frozen=True, slots=True)
class UserPattern:
    """A named regular expression (RE2 syntax) and the class of what it finds."""

    name: str
    regex: str
    sensitive_class: SensitiveClass


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False
    options.max_mem = _MAX_MEMORY
    return options


def _message(error: Exception) -> str:
    detail = error.args[0] if error.args else error
    return detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)


@dataclass(frozen=True, slots=True)
class _Compiled:
    pattern: UserPattern
    regex: Any  # a compiled re2 regular expression (the module ships no type hints)


class UserPatternSet:
    """Compiled user patterns: a single RE2 set pass says which patterns may match anywhere in
    a batch, then only those run, value by value, to find exact spans."""

    def __init__(self, patterns: Sequence[UserPattern]) -> None:
        self._compiled: list[_Compiled] = []
        self._prefilter = re2.Set.SearchSet(_options())
        for pattern in patterns:
            if "\\A" in pattern.regex or "\\z" in pattern.regex:
                raise ConfigError(
                    f"masking pattern {pattern.name!r}: \\A and \\z are not supported; "
                    "use ^ and $, which anchor at the start and end of each value"
                )
            try:
                regex = re2.compile(pattern.regex.encode(), _options())
                # Multi-line mode on a newline-joined batch finds a superset of per-value
                # matches, including those anchored with ^ and $.
                self._prefilter.Add(b"(?m)" + pattern.regex.encode())
            except re2.error as error:
                raise ConfigError(
                    f"masking pattern {pattern.name!r} is not a valid RE2 expression: "
                    f"{_message(error)}"
                ) from error
            if regex.search(b"") is not None:
                raise ConfigError(
                    f"masking pattern {pattern.name!r} matches the empty string; "
                    "it would match everywhere"
                )
            self._compiled.append(_Compiled(pattern, regex))
        if self._compiled:
            self._prefilter.Compile()

    def __bool__(self) -> bool:
        return bool(self._compiled)

    def candidates(self, values: Sequence[bytes | memoryview]) -> list[int]:
        """Indices of the patterns that may match one of `values`."""
        if not self._compiled or not values:
            return []
        matched = self._prefilter.Match(b"\n".join(values))
        return sorted(matched) if matched else []

    def pattern(self, index: int) -> UserPattern:
        return self._compiled[index].pattern

    def spans(self, index: int, value: bytes | memoryview) -> Iterator[tuple[int, int]]:
        """Non-empty (start, end) spans of pattern `index` in one value."""
        for match in self._compiled[index].regex.finditer(bytes(value)):
            start, end = match.span()
            if end > start:
                yield start, end

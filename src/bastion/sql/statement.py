"""StatementInfo: what Bastion knows about one SQL statement after analysis."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StatementInfo:
    """One statement of a client message, analyzed.

    `kind` is a snake_case name such as `select`, `insert`, `create_table`, `drop`, `copy`;
    `unknown` when the statement could not be parsed (then `error` says why). `normalized` is the
    statement with every literal replaced by a placeholder, safe to log; `fingerprint` identifies
    statements that differ only in their literals.
    """

    kind: str
    text: str
    normalized: str
    fingerprint: str
    error: str | None = None

    @property
    def parsed(self) -> bool:
        return self.error is None

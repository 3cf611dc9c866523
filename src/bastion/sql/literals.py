"""Whether the analysis of a statement looked at the value of one of its literals.

Most statements are analyzed the same whatever their literals (`WHERE aid = 12` and
`WHERE aid = 13`), so the analyzer can reuse one analysis for every statement that differs from
it only in literals. A few facts do depend on literal values: a condition that folds to a
constant (`WHERE 1 = 1`), a select-list position (`ORDER BY 2`), a function argument read as
text (`set_config('role', ...)`), a code body (`DO '...'`). The code that reads such a value
calls `note_read()`, and the analyzer reuses an analysis only when no read was noted while it
ran. The note is per thread: catalog loads analyze view definitions on worker threads.
"""

from __future__ import annotations

import threading

_state = threading.local()


def note_read() -> None:
    """The analysis running on this thread depends on a literal's value."""
    _state.read = True


def start() -> bool:
    """An analysis starts on this thread: nothing read yet. Returns the enclosing analysis's
    note (an analysis can run inside another, for a code body), for `finish`."""
    enclosing = bool(getattr(_state, "read", False))
    _state.read = False
    return enclosing


def finish(enclosing: bool) -> bool:
    """The analysis ends: whether it read a literal's value. The enclosing analysis, if any,
    keeps its own note, plus this one's."""
    read = bool(getattr(_state, "read", True))
    _state.read = enclosing or read
    return read

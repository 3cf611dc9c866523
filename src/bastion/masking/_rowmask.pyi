"""Types of the C extension `_rowmask.c` (the masked-row rewriter)."""

from collections.abc import Callable, Sequence
from typing import Any, Final

PASS: Final[int]
CONSTANT: Final[int]
SCAN: Final[int]
CALL: Final[int]
EMAIL: Final[int]
KEEP: Final[int]

class MalformedRow(ValueError): ...

Scan = Callable[[bytes, bytes, bytes], Sequence[tuple[int, bytes | None]] | None]

class RowRewriter:
    def __init__(self, operations: tuple[tuple[Any, ...] | None, ...]) -> None: ...
    def rewrite(self, run: bytes | memoryview, scan: Scan) -> bytes | None: ...
    @property
    def counts(self) -> tuple[int, ...]: ...

"""Types of the C extension `_spans.c` (rewriting the findings inside a text value)."""

from typing import Final

REDACT: Final[int]
KEEP: Final[int]
EMAIL: Final[int]

def mask(
    value: bytes | bytearray | memoryview, spans: list[tuple[int, int, int, int, int]], /
) -> bytes: ...

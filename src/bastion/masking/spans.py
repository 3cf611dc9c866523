"""Masking the findings inside a value, keeping the value exactly as long as it was.

This module owns `SpanMasker`: given a value and the findings the scanner confirmed in it, it
rewrites only the letters and digits of each span and leaves punctuation, separators and escape
sequences alone. Every finding is ASCII and every replacement byte is ASCII, so the value keeps
its byte length and character count: a char(n) stays n characters, a varchar(n) stays within n,
binary structures around the text (array and record lengths) stay right, and a JSON document
stays valid (a span inside a JSON number gets digits, not asterisks). Only the `null` strategy
changes the value's shape: the whole value becomes NULL.

Values that are not JSON documents, with findings whose strategies are `redact` or `partial`
(the defaults of every class), are rewritten by `bastion.masking._spans` in C when it is built;
this module's Python is the reference for those and does everything else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from bastion.errors import ConfigError
from bastion.masking.bulk import Finding, resolve_overlaps
from bastion.masking.classes import CLASS_SPECS, SensitiveClass, Strategy
from bastion.masking.tokens import HASH_NEEDS_KEY, TokenKey
from bastion.masking.validators import ALNUM

try:
    from bastion.masking import _spans
except ImportError:  # built by `pip install`; the Python below does the same
    _spans = None  # type: ignore[assignment]

NATIVE_SPANS: Final = _spans is not None

MASK: Final = 0x2A  # *
NUMBER_MASK: Final = 0x39  # 9: a masked digit inside a JSON number must stay a digit
_BACKSLASH: Final = 0x5C
_QUOTE: Final = 0x22
_TOKEN_ALPHABET: Final = b"abcdefghijklmnopqrstuvwxyz234567"
_DIGIT_ALPHABET: Final = b"0123456789"
_TO_MASK: Final = bytes(MASK if byte in ALNUM else byte for byte in range(256))


def _protected(value: bytes | bytearray, start: int, end: int) -> set[int]:
    """Positions in [start, end) that belong to a backslash escape (`\\n`, `\\u00e9`) and must
    not change, or the escape would break."""
    protected: set[int] = set()
    position = value.find(b"\\", max(0, start - 5), end)
    while position >= 0:
        protected.add(position + 1)
        if position + 1 < len(value) and value[position + 1] == 0x75:  # \uXXXX
            protected.update(range(position + 2, position + 6))
        position = value.find(b"\\", position + 2, end)
    return protected


def in_json_string(
    value: bytes | bytearray, position: int, *, start: int = 0, inside: bool = False
) -> bool:
    """Whether `position` of a JSON document lies inside a string: an odd number of unescaped
    quotes before it. `start` and `inside` resume from an earlier answer (findings come in
    order, so a document is read once however many findings it has)."""
    quote = value.find(b'"', start, position)
    while quote >= 0:
        backslashes = 0
        while quote - backslashes > 0 and value[quote - backslashes - 1] == _BACKSLASH:
            backslashes += 1
        if backslashes % 2 == 0:
            inside = not inside
        quote = value.find(b'"', quote + 1, position)
    return inside


class SpanMasker:
    """Rewrites findings inside values with each class's strategy."""

    def __init__(
        self,
        strategies: Mapping[SensitiveClass, Strategy] | None = None,
        key: TokenKey | None = None,
        *,
        native: bool = True,
    ) -> None:
        self._strategies = {c: spec.default for c, spec in CLASS_SPECS.items()}
        self._strategies.update(strategies or {})
        if key is None and Strategy.HASH in self._strategies.values():
            raise ConfigError(HASH_NEEDS_KEY)
        self._key = key
        # Per class, what the C rewrite does for it: (operation, keep_first, keep_last).
        self._native_operations: dict[SensitiveClass, tuple[int, int, int]] | None = None
        if native and _spans is not None:
            self._native_operations = self._span_operations()

    def _span_operations(self) -> dict[SensitiveClass, tuple[int, int, int]]:
        assert _spans is not None
        operations: dict[SensitiveClass, tuple[int, int, int]] = {}
        for sensitive_class, strategy in self._strategies.items():
            spec = CLASS_SPECS[sensitive_class]
            if strategy is Strategy.REDACT:
                operations[sensitive_class] = (_spans.REDACT, 0, 0)
            elif strategy is Strategy.PARTIAL:
                email = sensitive_class is SensitiveClass.EMAIL
                operation = _spans.EMAIL if email else _spans.KEEP
                operations[sensitive_class] = (operation, spec.keep_first, spec.keep_last)
        return operations

    def strategy(self, sensitive_class: SensitiveClass) -> Strategy:
        return self._strategies[sensitive_class]

    def mask(
        self, value: bytes | memoryview, findings: Sequence[Finding], *, json: bool = False
    ) -> bytes | None:
        """`value` with every finding masked; None when a finding's strategy is `null`.

        `json`: the value is a JSON document (json, or jsonb after its version byte), whose
        numbers must stay numbers."""
        ordered = resolve_overlaps(findings) if len(findings) > 1 else findings
        operations = self._native_operations
        if operations is not None and not json:
            spans = []
            for finding in ordered:
                operation = operations.get(finding.sensitive_class)
                if operation is None:  # hash or null: the Python below
                    break
                spans.append((finding.start + finding.kept_prefix, finding.end, *operation))
            else:
                assert _spans is not None
                return _spans.mask(value, spans)
        out = bytearray(value)
        read_to, in_string = 0, False
        for finding in ordered:
            strategy = self._strategies[finding.sensitive_class]
            if strategy is Strategy.NULL:
                return None
            mask = MASK
            if json:
                # Masking changes letters and digits only, so quotes read the same after it.
                in_string = in_json_string(out, finding.start, start=read_to, inside=in_string)
                read_to = finding.start
                if not in_string:
                    mask = NUMBER_MASK
            if strategy is Strategy.HASH:
                self._hash(out, finding, numeric=mask == NUMBER_MASK)
            elif strategy is Strategy.PARTIAL:
                self._partial(out, finding, mask)
            else:
                self._redact(out, finding.start + finding.kept_prefix, finding.end, mask)
        return bytes(out)

    @staticmethod
    def _redact(out: bytearray, start: int, end: int, mask: int) -> None:
        if mask == MASK and out.find(b"\\", max(0, start - 5), end) < 0:
            out[start:end] = out[start:end].translate(_TO_MASK)
            return
        protected = _protected(out, start, end)
        for position in range(start, end):
            if out[position] in ALNUM and position not in protected:
                out[position] = mask

    def _partial(self, out: bytearray, finding: Finding, mask: int) -> None:
        start, end = finding.start + finding.kept_prefix, finding.end
        if finding.sensitive_class is SensitiveClass.EMAIL:
            at = out.rfind(b"@", start, end)
            if at > start:
                self._redact(out, start, at, mask)
                return
        spec = CLASS_SPECS[finding.sensitive_class]
        alnum = [p for p in range(start, end) if out[p] in ALNUM]
        keep_first, keep_last = spec.keep_first, spec.keep_last
        # Keep at most half of a short value visible.
        while keep_first + keep_last > len(alnum) // 2 and (keep_first or keep_last):
            if keep_last >= keep_first:
                keep_last -= 1
            else:
                keep_first -= 1
        protected = _protected(out, start, end)
        for position in alnum[keep_first : len(alnum) - keep_last]:
            if position not in protected:
                out[position] = mask

    def _hash(self, out: bytearray, finding: Finding, *, numeric: bool) -> None:
        assert self._key is not None
        start, end = finding.start, finding.end
        protected = _protected(out, start, end)
        positions = [p for p in range(start, end) if out[p] in ALNUM and p not in protected]
        alphabet = _DIGIT_ALPHABET if numeric else _TOKEN_ALPHABET
        token = self._key.characters(bytes(out[start:end]), alphabet, len(positions))
        for position, char in zip(positions, token, strict=True):
            out[position] = char
        if numeric and positions and out[positions[0]] == 0x30 and positions[0] == start:
            out[positions[0]] = 0x31  # a JSON number must not start with 0

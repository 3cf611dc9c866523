"""One Hyperscan pass over many values at once, then a precise check per candidate.

This module owns `ContentScanner`: it compiles the detectors' patterns into Hyperscan block
databases (once per process), scans a whole batch of values in a single call (values joined by
a NUL byte, which no pattern accepts, so no match can span two values) and returns findings
relative to each value. The first pass reports only where matches end, which is about three
times cheaper and tells which values hold a candidate; those values alone get the pass that
reports where matches start. Of those matches the widest per pattern and start is kept, and
each is confirmed by its detector's Python check on the span only. User
patterns (RE2) run after it over the same batch. A scanner is not safe to share between
threads (Hyperscan scratch space is per scanner); Bastion's event loop is single-threaded.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from functools import cache
from itertools import accumulate
from typing import Any, NamedTuple

import hyperscan

from bastion.masking.classes import CLASS_SPECS, SensitiveClass
from bastion.masking.detectors import DEFAULT_DETECTORS, Detector
from bastion.masking.user_patterns import UserPattern, UserPatternSet

SEPARATOR = b"\x00"
MAX_SCAN_BYTES = 4 << 20  # one scan call copies at most about this much (plus one value)


class Finding(NamedTuple):
    """A confirmed sensitive span inside value number `field` of a scanned batch."""

    field: int
    start: int
    end: int
    detector: str
    sensitive_class: SensitiveClass
    kept_prefix: int = 0  # leading bytes that only name the kind of secret (`ghp_`)


def _collect(
    ident: int, start: int, end: int, flags: int, context: list[tuple[int, int, int]]
) -> None:
    context.append((ident, start, end))


def _collect_end(ident: int, start: int, end: int, flags: int, context: list[int]) -> None:
    context.append(end)


def _kept_prefix(detector: Detector, span: bytes) -> int:
    for prefix in detector.kept_prefixes:
        if span.startswith(prefix) and len(span) > len(prefix):
            return len(prefix)
    return 0


@cache
def _compile(detectors: tuple[Detector, ...], *, start_of_match: bool = True) -> Any:
    """The Hyperscan block-mode database of these detectors, compiled once per process.

    With `start_of_match`, each match reports where it starts (about 0.2 s to compile, and a
    scan about three times slower); without, only where it ends: the first pass uses that to
    find which values hold a candidate at all."""
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    som = hyperscan.HS_FLAG_SOM_LEFTMOST if start_of_match else 0
    flags = [som | (hyperscan.HS_FLAG_CASELESS if d.caseless else 0) for d in detectors]
    database.compile(
        expressions=[d.pattern for d in detectors],
        ids=list(range(len(detectors))),
        elements=len(detectors),
        flags=flags,
    )
    return database


class ContentScanner:
    """Finds sensitive values inside text: built-in detectors plus user patterns."""

    def __init__(
        self,
        detectors: Sequence[Detector] = DEFAULT_DETECTORS,
        user_patterns: Sequence[UserPattern] = (),
    ) -> None:
        if not detectors:
            raise ValueError("a content scanner needs at least one detector")
        self.user_patterns = UserPatternSet(user_patterns)
        self.detectors = tuple(detectors)
        self._database = _compile(self.detectors)
        self._ends_database = _compile(self.detectors, start_of_match=False)

    def scan(self, values: Sequence[bytes | memoryview]) -> list[Finding]:
        """Every confirmed finding in `values`, with offsets relative to its own value.

        The values are copied into one buffer; past `MAX_SCAN_BYTES` they are scanned in
        several calls, so the copy stays bounded whatever the batch size."""
        if not values:
            return []
        total = sum(len(value) for value in values)
        if total > MAX_SCAN_BYTES and len(values) > 1:
            findings: list[Finding] = []
            first = 0
            size = 0
            for index, value in enumerate(values):
                size += len(value)
                if size > MAX_SCAN_BYTES and index > first:
                    findings.extend(self._shifted(values[first:index], first))
                    first, size = index, len(value)
            findings.extend(self._shifted(values[first:], first))
            return findings
        return self._scan_once(values)

    def _shifted(self, values: Sequence[bytes | memoryview], offset: int) -> list[Finding]:
        return [f._replace(field=f.field + offset) for f in self._scan_once(values)]

    def _scan_once(self, values: Sequence[bytes | memoryview]) -> list[Finding]:
        buffer = SEPARATOR.join(values)
        starts = list(accumulate((len(value) + 1 for value in values[:-1]), initial=0))
        return self.scan_joined(buffer, starts, values)

    def scan_joined(
        self,
        buffer: bytes,
        starts: Sequence[int],
        values: Sequence[bytes | memoryview] | None = None,
    ) -> list[Finding]:
        """`scan` of values already joined by NUL bytes into `buffer`, value i starting at
        `starts[i]` (`values`, when given, are the same values apart).

        Two passes: one over the whole buffer that only reports where matches end, which
        names the values holding a candidate; then, over those values alone, the pass that
        reports where each match starts, and the detectors' precise checks."""
        ends: list[int] = []
        self._ends_database.scan(buffer, match_event_handler=_collect_end, context=ends)
        findings: list[Finding] = []
        if ends:
            held = sorted({bisect_right(starts, end - 1) - 1 for end in ends})
            if len(held) * 2 > len(starts):
                findings = self._confirmed(buffer, starts)
            else:
                bounds = [(starts[i], _value_end(buffer, starts, i)) for i in held]
                subset = SEPARATOR.join(buffer[start:end] for start, end in bounds)
                substarts = list(
                    accumulate((end - start + 1 for start, end in bounds[:-1]), initial=0)
                )
                findings = self._confirmed(subset, substarts, held)
        if self.user_patterns:
            if values is None:
                values = [
                    buffer[start : _value_end(buffer, starts, i)] for i, start in enumerate(starts)
                ]
            findings.extend(self._user_findings(values))
        return findings

    def _confirmed(
        self, buffer: bytes, starts: Sequence[int], fields: Sequence[int] | None = None
    ) -> list[Finding]:
        """The findings in values joined into `buffer`, each confirmed by its detector.
        `fields`: the number each value has in the caller's batch (default: its position)."""
        candidates: list[tuple[int, int, int]] = []
        self._database.scan(buffer, match_event_handler=_collect, context=candidates)
        findings: list[Finding] = []
        # Each (pattern, start) may be reported at several ends; the widest that the detector
        # confirms wins (a card followed by more digits is still a card).
        ends: dict[tuple[int, int], list[int]] = {}
        for ident, start, end in candidates:
            ends.setdefault((ident, start), []).append(end)
        for (ident, start), candidate_ends in ends.items():
            detector = self.detectors[ident]
            span = None
            for end in (
                sorted(candidate_ends, reverse=True) if len(candidate_ends) > 1 else candidate_ends
            ):
                span = detector.confirm(buffer, start, end)
                if span is not None:
                    break
            if span is None:
                continue
            span_start, span_end = span
            index = bisect_right(starts, span_start) - 1
            base = starts[index]
            kept = (
                _kept_prefix(detector, buffer[span_start:span_end]) if detector.kept_prefixes else 0
            )
            findings.append(
                Finding(
                    index if fields is None else fields[index],
                    span_start - base,
                    span_end - base,
                    detector.name,
                    detector.sensitive_class,
                    kept,
                )
            )
        return findings

    def _user_findings(self, values: Sequence[bytes | memoryview]) -> list[Finding]:
        findings: list[Finding] = []
        for index in self.user_patterns.candidates(values):
            pattern = self.user_patterns.pattern(index)
            for field, value in enumerate(values):
                for start, end in self.user_patterns.spans(index, value):
                    findings.append(
                        Finding(field, start, end, pattern.name, pattern.sensitive_class)
                    )
        return findings


def _value_end(buffer: bytes, starts: Sequence[int], index: int) -> int:
    return starts[index + 1] - 1 if index + 1 < len(starts) else len(buffer)


def resolve_overlaps(findings: Sequence[Finding]) -> list[Finding]:
    """Findings of one value without overlaps, in order: overlapping spans merge into one,
    which takes the class that ranks first (a key's digits are not also a phone number)."""
    ordered = sorted(findings, key=lambda f: (f.start, -f.end, CLASS_SPECS[f.sensitive_class].rank))
    merged: list[Finding] = []
    for finding in ordered:
        if merged and finding.start < merged[-1].end:
            current = merged[-1]
            end = max(current.end, finding.end)
            if (
                CLASS_SPECS[finding.sensitive_class].rank
                < CLASS_SPECS[current.sensitive_class].rank
            ):
                kept = finding.kept_prefix if finding.start == current.start else 0
                current = finding._replace(start=current.start, kept_prefix=kept)
            merged[-1] = current._replace(end=end)
        else:
            merged.append(finding)
    return merged

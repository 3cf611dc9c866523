"""JSON lines export of audit records, for SIEM pipelines (Vector, Fluent Bit, Splunk, ...).

One record per line, keys sorted: `hash`, `kind`, `payload`, `prev_hash`, `seq`, `ts`. The
payload is written exactly as it was hashed, so a consumer can recompute every hash (see
`record.record_hash`) and an exported checkpoint can later be handed back to `verify` as a
witness. Output goes to a stream or to a file that rotates by size: when the next line would
take the file past `rotate_bytes`, it is renamed to `<name>.<first seq>-<last seq>` (12-digit
seqs, so names sort in order) and a new file is started.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from bastion.audit.record import AuditRecord, canonical_json, load_payload, parse_ts

# Enough to hold the last line of an export file: records are small, but a statement can be long.
_TAIL_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ExportResult:
    records: int
    last_seq: int | None
    files: tuple[Path, ...] = ()  # rotated files completed during this export


class RotatingFile:
    """Appends lines to `path`, rotating it once it would grow past `rotate_bytes`."""

    def __init__(self, path: Path, rotate_bytes: int | None = None) -> None:
        if rotate_bytes is not None and rotate_bytes < 1:
            raise ValueError("rotate_bytes must be positive")
        self.path = Path(path)
        self.rotate_bytes = rotate_bytes
        self.rotated: list[Path] = []
        self._first_seq, self._last_seq = _seq_range(self.path)
        self._handle: TextIO = self.path.open("a", encoding="utf-8")
        self._size = self._handle.tell()

    def write(self, line: str, seq: int) -> None:
        data = line + "\n"
        size = len(data.encode("utf-8"))
        if self.rotate_bytes is not None and self._size and self._size + size > self.rotate_bytes:
            self._rotate()
        self._handle.write(data)
        self._size += size
        if self._first_seq is None:
            self._first_seq = seq
        self._last_seq = seq

    def close(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()

    def _rotate(self) -> None:
        self._handle.flush()
        os.fsync(self._handle.fileno())
        self._handle.close()
        rotated = self.path.with_name(
            f"{self.path.name}.{self._first_seq or 0:012d}-{self._last_seq or 0:012d}"
        )
        os.replace(self.path, rotated)
        self.rotated.append(rotated)
        self._handle = self.path.open("a", encoding="utf-8")
        self._size = 0
        self._first_seq = self._last_seq = None


def export_records(records: Iterable[AuditRecord], out: TextIO | RotatingFile) -> ExportResult:
    """Write `records` as JSON lines to a stream or a rotating file."""
    count = 0
    last: int | None = None
    for record in records:
        line = record.to_json()
        if isinstance(out, RotatingFile):
            out.write(line, record.seq)
        else:
            out.write(line + "\n")
        count += 1
        last = record.seq
    files = tuple(out.rotated) if isinstance(out, RotatingFile) else ()
    return ExportResult(count, last, files)


def parse_line(line: str) -> AuditRecord:
    """A record from one exported line; ValueError when the line is not one."""
    value = json.loads(line)
    if not isinstance(value, dict):
        raise ValueError("an exported audit line is a JSON object")
    try:
        payload = value["payload"]
        if not isinstance(payload, dict):
            raise ValueError("an exported record's payload is a JSON object")
        payload_json = canonical_json(payload)
        return AuditRecord(
            seq=int(value["seq"]),
            ts=parse_ts(str(value["ts"])),
            kind=str(value["kind"]),
            payload=load_payload(payload_json),
            prev_hash=str(value["prev_hash"]),
            hash=str(value["hash"]),
            payload_json=payload_json,
        )
    except KeyError as exc:
        raise ValueError(f"an exported audit line lacks {exc.args[0]!r}") from None


def read_export(path: Path) -> Iterator[AuditRecord]:
    """The records in an exported JSON lines file, in file order."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield parse_line(line)
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: {exc}") from exc


def _seq_range(path: Path) -> tuple[int | None, int | None]:
    """The first and last seq already in an export file being appended to."""
    if not path.exists() or path.stat().st_size == 0:
        return None, None
    with path.open("rb") as handle:
        first_line = handle.readline()
        handle.seek(max(0, path.stat().st_size - _TAIL_BYTES))
        lines = [line for line in handle.read().splitlines() if line.strip()]
    try:
        first = parse_line(first_line.decode("utf-8")).seq
        last = parse_line(lines[-1].decode("utf-8")).seq
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} does not end with an exported audit record") from exc
    return first, last

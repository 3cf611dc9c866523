"""JSON lines export: one record per line with seq and hash, size-based rotation, read-back."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from bastion.audit.export import RotatingFile, export_records, parse_line, read_export
from bastion.audit.keys import AuditSigner
from bastion.audit.record import GENESIS_HASH, record_hash
from bastion.audit.sqlite_store import SQLiteAuditStore

from .conftest import build_chain


def test_each_line_is_one_record_a_consumer_can_rehash(
    sqlite_store: SQLiteAuditStore, signer: AuditSigner
) -> None:
    records = build_chain(sqlite_store, signer, 12, checkpoint_every=5)
    out = io.StringIO()
    result = export_records(sqlite_store.iterate(), out)
    assert (result.records, result.last_seq) == (len(records), records[-1].seq)
    lines = out.getvalue().splitlines()
    assert len(lines) == len(records)
    previous = GENESIS_HASH
    for line, record in zip(lines, records, strict=True):
        value = json.loads(line)
        assert list(value) == ["hash", "kind", "payload", "prev_hash", "seq", "ts"]
        assert (value["seq"], value["hash"]) == (record.seq, record.hash)
        # What a SIEM can do without Bastion: recompute the chain from the line alone.
        payload = json.dumps(
            value["payload"], sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        assert value["prev_hash"] == previous
        assert (
            record_hash(previous, value["seq"], record.ts, value["kind"], payload)
            == (value["hash"])
        )
        previous = value["hash"]
        assert parse_line(line) == record


def test_files_rotate_by_size_and_are_named_by_seq(
    tmp_path: Path, sqlite_store: SQLiteAuditStore
) -> None:
    records = build_chain(sqlite_store, None, 30)
    limit = sum(len(r.to_json()) + 1 for r in records[:10])
    path = tmp_path / "audit.jsonl"
    output = RotatingFile(path, rotate_bytes=limit)
    first = export_records(sqlite_store.iterate(to_seq=25), output)
    output.close()
    assert first.files[0].name == "audit.jsonl.000000000001-000000000010"
    assert len(first.files) == 2
    # Appending later continues the current file and names it by every seq it holds.
    output = RotatingFile(path, rotate_bytes=limit)
    second = export_records(sqlite_store.iterate(from_seq=26), output)
    output.close()
    files = [*first.files, *second.files]
    exported = []
    for file in files:
        assert file.stat().st_size <= limit
        held = list(read_export(file))
        assert file.name == f"audit.jsonl.{held[0].seq:012d}-{held[-1].seq:012d}"
        exported += held
    exported += read_export(path)
    assert exported == records


def test_reading_a_damaged_export_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"seq": 1}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1: .*lacks 'payload'"):
        list(read_export(path))
    with pytest.raises(ValueError, match="positive"):
        RotatingFile(tmp_path / "x.jsonl", rotate_bytes=0)

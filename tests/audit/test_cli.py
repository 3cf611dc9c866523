"""`bastion audit ...` through a parser built from the module's own `register`."""

from __future__ import annotations

import argparse
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from bastion.audit.keys import AuditSigner, data_dir_signer, file_signer
from bastion.audit.postgres_store import PostgresAuditStore
from bastion.audit.sqlite_store import SQLiteAuditStore
from bastion.cli import audit as audit_cli
from bastion.datadir import DataDir

from .conftest import build_chain


def run(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="bastion")
    audit_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["audit", *argv])
    status: int = args.func(args)
    return status


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data dir holding a store of 25 statements with checkpoints, signed by its own key."""
    monkeypatch.delenv("BASTION_DATA_DIR", raising=False)
    monkeypatch.delenv("BASTION_AUDIT_STORE", raising=False)
    path = tmp_path / "data"
    signer = data_dir_signer(DataDir(path))
    store = SQLiteAuditStore(path / "audit.db")
    build_chain(store, signer, 25, checkpoint_every=10)
    store.close()
    return path


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_tail_prints_the_newest_records(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["tail", "-n", "3", "--data-dir", str(data_dir)]) == 0
    out = lines(capsys.readouterr().out)
    assert [line.split()[0] for line in out] == ["26", "27", "28"]
    assert "statement" in out[0] and "user=" in out[0]
    assert "checkpoint" in out[2] and "covers 23..27" in out[2]


def test_tail_json(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["tail", "-n", "2", "--json", "--data-dir", str(data_dir)]) == 0
    records = [json.loads(line) for line in lines(capsys.readouterr().out)]
    assert [r["seq"] for r in records] == [27, 28]
    assert all(len(r["hash"]) == 64 for r in records)


def test_tail_follow_prints_new_records(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    polls = 0

    def sleep(_seconds: float) -> None:
        nonlocal polls
        polls += 1
        if polls == 1:
            store = SQLiteAuditStore(data_dir / "audit.db")
            build_chain(store, None, 2)
            store.close()
        else:
            raise KeyboardInterrupt

    monkeypatch.setattr(audit_cli, "_pause", sleep)
    assert run(["tail", "-n", "1", "-f", "--data-dir", str(data_dir)]) == 0
    assert [line.split()[0] for line in lines(capsys.readouterr().out)] == ["28", "29", "30"]


def test_search_filters_and_prints(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["search", "--user", "bob", "--decision", "allow", "--data-dir", str(data_dir)]) == 0
    out = lines(capsys.readouterr().out)
    assert out and all("user=bob" in line and "decision=allow" in line for line in out)
    assert (
        run(
            ["search", "--table", "invoices", "--json", "--limit", "2", "--data-dir", str(data_dir)]
        )
        == 0
    )
    found = [json.loads(line) for line in lines(capsys.readouterr().out)]
    assert len(found) == 2 and found[0]["seq"] < found[1]["seq"]
    assert all("billing.invoices" in r["payload"]["tables"] for r in found)
    since = "2024-03-01T12:20:00"
    assert (
        run(["search", "--since", since, "--kind", "statement", "--data-dir", str(data_dir)]) == 0
    )
    assert len(lines(capsys.readouterr().out)) == 5


def test_search_refuses_bad_times(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run(["search", "--since", "yesterday", "--data-dir", str(data_dir)])
    assert "not an ISO 8601 time" in capsys.readouterr().err


def test_show_prints_one_record(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["show", "5", "--data-dir", str(data_dir)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["seq"] == 5 and record["kind"] == "statement"
    assert run(["show", "500", "--data-dir", str(data_dir)]) == 1
    assert "no audit record with seq 500" in capsys.readouterr().err


def test_verify_intact_and_broken(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["verify", "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr().out
    assert "ok: 28 records, seq 1 to 28" in out
    assert "last checkpoint: seq 28 (covers up to seq 27); 0 records follow it" in out
    conn = sqlite3.connect(data_dir / "audit.db")
    conn.execute("UPDATE records SET payload = replace(payload, 'SELECT', 'DELETE') WHERE seq = 13")
    conn.commit()
    conn.close()
    assert run(["verify", "--data-dir", str(data_dir)]) == 1
    assert "BROKEN: seq 13: hash mismatch" in capsys.readouterr().err


def test_verify_with_an_exported_public_key_and_witness(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["public-key", "--data-dir", str(data_dir)]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("-----BEGIN PUBLIC KEY-----")
    assert "key id: " in captured.err
    public = tmp_path / "audit.pub"
    public.write_text(captured.out)
    export = tmp_path / "export.jsonl"
    assert run(["export", "--output", str(export), "--data-dir", str(data_dir)]) == 0
    capsys.readouterr()
    # Verification elsewhere: only the public key, no data dir key.
    (data_dir / "keys" / "audit-signing-key").rename(tmp_path / "moved-key")
    argv = ["verify", "--public-key", str(public), "--witness", str(export)]
    assert run([*argv, "--data-dir", str(data_dir)]) == 0
    assert "3 exported checkpoints matched the store" in capsys.readouterr().out
    conn = sqlite3.connect(data_dir / "audit.db")
    conn.execute("DELETE FROM records WHERE seq > 20")
    conn.execute("UPDATE chain_head SET seq = 20, hash = (SELECT hash FROM records WHERE seq = 20)")
    conn.commit()
    conn.close()
    assert run([*argv, "--data-dir", str(data_dir)]) == 1
    assert "truncated: the exported checkpoint at seq 22" in capsys.readouterr().err


def test_verify_without_any_key_says_so(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (data_dir / "keys" / "audit-signing-key").unlink()
    assert run(["verify", "--data-dir", str(data_dir)]) == 1
    assert "pass --public-key FILE" in capsys.readouterr().err


def test_export_to_stdout_and_rotating_files(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["export", "--from-seq", "20", "--to-seq", "22", "--data-dir", str(data_dir)]) == 0
    assert [json.loads(line)["seq"] for line in lines(capsys.readouterr().out)] == [20, 21, 22]
    output = tmp_path / "out" / "audit.jsonl"
    output.parent.mkdir()
    argv = ["export", "--output", str(output), "--rotate-bytes", "2000"]
    assert run([*argv, "--data-dir", str(data_dir)]) == 0
    assert "exported 28 records" in capsys.readouterr().err
    files = sorted(output.parent.iterdir())
    assert len(files) > 2
    total = sum(len(lines(f.read_text())) for f in files)
    assert total == 28
    assert run(["export", "--rotate-bytes", "10", "--data-dir", str(data_dir)]) == 2
    assert "--rotate-bytes needs --output" in capsys.readouterr().err


def test_prune_keeps_a_verifiable_chain(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["prune", "--keep-records", "5", "--data-dir", str(data_dir)]) == 0
    assert "pruned 23 records; the chain now starts at seq 24 (anchor: seq 29)" in (
        capsys.readouterr().out
    )
    assert run(["verify", "--data-dir", str(data_dir)]) == 0
    assert "records before seq 24 were pruned" in capsys.readouterr().out
    assert run(["prune", "--keep-records", "100", "--data-dir", str(data_dir)]) == 0
    assert "nothing to prune" in capsys.readouterr().out


def test_prune_refuses_a_broken_record(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conn = sqlite3.connect(data_dir / "audit.db")
    conn.execute("DELETE FROM records WHERE seq = 3")
    conn.commit()
    conn.close()
    assert run(["prune", "--keep-days", "1", "--data-dir", str(data_dir)]) == 1
    assert "not pruning, the record is broken: seq 4: gap" in capsys.readouterr().err


def test_prune_needs_a_keep_option(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run(["prune", "--data-dir", str(data_dir)])
    assert "--keep-days" in capsys.readouterr().err


def test_public_key_from_a_configured_key_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "audit.pem"
    signer = file_signer(key)
    assert run(["public-key", "--signing-key", str(key)]) == 0
    captured = capsys.readouterr()
    assert f"key id: {signer.key_id}" in captured.err
    assert run(["public-key", "--signing-key", str(tmp_path / "missing.pem")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_missing_store_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["tail", "--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "no audit store at" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()


def test_the_data_dir_comes_from_the_environment(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BASTION_DATA_DIR", str(data_dir))
    assert run(["show", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["seq"] == 1


def test_a_postgres_store_by_url(
    audit_pg_dsn: str,
    pg_schema: str,
    signer: AuditSigner,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = PostgresAuditStore(audit_pg_dsn, schema=pg_schema)
    build_chain(store, signer, 12, checkpoint_every=5)
    store.close()
    params = dict(part.split("=", 1) for part in audit_pg_dsn.split())
    monkeypatch.setenv("PGPASSWORD", params.get("password", ""))
    url = f"postgresql://{params['user']}@{params['host']}:{params['port']}/{params['dbname']}"
    public = tmp_path / "audit.pub"
    from bastion.audit.keys import public_key_pem

    public.write_text(public_key_pem(signer.public_key))
    monkeypatch.setenv("BASTION_AUDIT_STORE", url)
    assert run(["verify", "--schema", pg_schema, "--public-key", str(public)]) == 0
    assert "ok: 15 records" in capsys.readouterr().out
    assert run(["search", "--user", "alice", "--schema", pg_schema]) == 0
    assert len(lines(capsys.readouterr().out)) == 4

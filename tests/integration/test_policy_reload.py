"""A running Bastion picks up policy changes (on change and on SIGHUP) and keeps enforcing
the last valid policy when a new one is invalid."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psycopg
import pytest

from bastion.demo.sample import SampleSummary
from support.bastion import BastionProcess
from support.cli import audit_cli
from support.servers import PostgresEndpoint

from .conftest import running_shop_bastion, shop_target

SELECT_ONLY = """\
version: 1
default_effect: deny
rules:
  - id: read
    match: {groups: [analysts], statements: [select, transaction]}
    effect: allow
"""
WITH_SHOW = SELECT_ONLY.replace("[select, transaction]", "[select, transaction, show]")
NOTHING = "version: 1\ndefault_effect: deny\n"


def _show_allowed(proc: BastionProcess) -> bool:
    with psycopg.connect(proc.dsn(), autocommit=True) as conn:
        try:
            conn.execute("SHOW work_mem")
        except psycopg.errors.InsufficientPrivilege:
            return False
        return True


def _eventually(predicate: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def _write(path: Path, text: str) -> None:
    # Replace atomically, as editors and deployment tools do.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_policy_changes_apply_without_a_restart(
    tmp_path: Path, postgres_endpoint: PostgresEndpoint, shop_db: tuple[str, SampleSummary]
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(SELECT_ONLY)
    with running_shop_bastion(
        tmp_path / "bastion",
        postgres_endpoint,
        shop_db,
        extra={"policy": str(policy), "audit": {"enabled": True}},
    ) as proc:
        with psycopg.connect(proc.dsn(), autocommit=True) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert not _show_allowed(proc)

        _write(policy, WITH_SHOW)  # picked up by the file watcher
        assert _eventually(lambda: _show_allowed(proc))

        _write(policy, "version: 1\nrules: [{id: broken, effect: maybe}]\n")
        assert _eventually(lambda: "policy reload failed" in proc.log_text())
        assert _show_allowed(proc)  # the last valid policy still holds

        _write(policy, NOTHING)
        proc.process.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        assert _eventually(lambda: not _select_allowed(proc))
        assert proc.stop() == 0
    # Every reload attempt is in the audit record, with the file's digest when it took effect.
    found = audit_cli(proc.data_dir, "search", "--kind", "admin", "--json")
    reloads = [
        r.get("payload", r)
        for r in map(json.loads, found.stdout.splitlines())
        if r.get("payload", r).get("action") == "policy_reload"
    ]
    outcomes = [r["outcome"] for r in reloads]
    assert outcomes.count("ok") >= 2 and "failed" in outcomes, reloads
    ok = next(r for r in reloads if r["outcome"] == "ok")
    assert len(ok["sha256"]) == 64 and ok["version"] >= 2


def _select_allowed(proc: BastionProcess) -> bool:
    with psycopg.connect(proc.dsn(), autocommit=True) as conn:
        try:
            conn.execute("SELECT 1")
        except psycopg.errors.InsufficientPrivilege:
            return False
        return True


def test_invalid_policy_at_start_is_a_config_error(
    tmp_path: Path, postgres_endpoint: PostgresEndpoint, shop_db: tuple[str, SampleSummary]
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("version: 1\nrulez: []\n")
    proc = BastionProcess(
        workdir=tmp_path / "bastion",
        targets=[shop_target(postgres_endpoint, shop_db[0])],
        extra={"policy": str(policy)},
    )
    with pytest.raises(RuntimeError, match="rulez"):
        proc.start()
    assert proc.stop() == 2

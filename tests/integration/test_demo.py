"""`bastion demo` end to end: it starts, the printed psql line works, and SIGTERM cleans up."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from support.bastion import free_port


def _wait_for(path: Path, pattern: str, proc: subprocess.Popen[bytes], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        if re.search(pattern, text):
            return text
        if proc.poll() is not None:
            pytest.fail(f"bastion demo exited early:\n{text}")
        time.sleep(0.1)
    pytest.fail(f"bastion demo did not print {pattern!r}:\n{path.read_text(errors='replace')}")


def test_demo_serves_the_sample_and_cleans_up(tmp_path: Path) -> None:
    port, admin_port = free_port(), free_port()
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bastion.cli.main",
                "demo",
                "--listen",
                f"127.0.0.1:{port}",
                "--admin",
                f"127.0.0.1:{admin_port}",
                "--data-dir",
                str(tmp_path / "data"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        text = _wait_for(log, r"Press Ctrl-C", proc, timeout=60)
        assert f'PGPASSWORD=alice psql "host=127.0.0.1 port={port} user=alice dbname=demo"' in text
        upstream_port = int(re.search(r"throwaway server \(port (\d+)\)", text).group(1))  # type: ignore[union-attr]
        dsn = f"host=127.0.0.1 port={port} user=alice password=alice dbname=demo"
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT count(*) FROM customers").fetchone() == (200,)
            assert conn.execute("SELECT current_user").fetchone() == ("bastion_app",)
        for user, password in (("dana", "dana"), ("reporting-agent", "agent")):
            with psycopg.connect(
                f"host=127.0.0.1 port={port} user={user} password={password} dbname=demo"
            ) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
        _check_demo_policy(port)
        _check_demo_approval(port, admin_port, tmp_path)
        ca = tmp_path / "data" / "tls" / "ca.crt"
        with psycopg.connect(
            dsn.replace("127.0.0.1", "localhost") + f" sslmode=verify-full sslrootcert={ca}"
        ) as conn:
            assert conn.pgconn.ssl_in_use
        # Nobody but Bastion knows the upstream password: the superuser's is random too.
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(
                f"host=127.0.0.1 port={upstream_port} user=bastion_app dbname=shop "
                "password=bastion_app"
            )
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0, log.read_text()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", upstream_port), timeout=1).close()


def _check_demo_policy(port: int) -> None:
    def dsn(user: str, password: str) -> str:
        return f"host=127.0.0.1 port={port} user={user} password={password} dbname=demo"

    with psycopg.connect(dsn("alice", "alice"), autocommit=True) as alice:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="bastion: "):
            alice.execute("DELETE FROM orders WHERE id = 1")
        assert alice.execute("SELECT count(*) FROM orders").fetchone() is not None
    with psycopg.connect(dsn("reporting-agent", "agent"), autocommit=True) as agent:
        notices: list[str] = []
        agent.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        rows = agent.execute("SELECT g FROM generate_series(1, 5000) g").fetchall()
        assert len(rows) == 1000
        assert any("truncated to 1000" in n for n in notices)
        assert agent.execute("SELECT current_user").fetchone() == ("bastion_readonly",)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            agent.execute("UPDATE orders SET status = 'paid' WHERE id = 1")
    with psycopg.connect(dsn("dana", "dana"), autocommit=True) as dana:
        dana.execute("UPDATE orders SET status = status WHERE id = 1")
        dana_sees = dana.execute("SELECT email FROM customers ORDER BY id LIMIT 1").fetchone()
    with psycopg.connect(dsn("alice", "alice"), autocommit=True) as alice:
        alice_sees = alice.execute("SELECT email FROM customers ORDER BY id LIMIT 1").fetchone()
    # Masked for alice, in clear for dana (the demo policy unmasks for dbas).
    assert dana_sees is not None and alice_sees is not None
    assert "*" not in dana_sees[0] and alice_sees[0].startswith("*")


def _check_demo_approval(port: int, admin_port: int, home: Path) -> None:
    """The demo's story: dana's DROP TABLE payments waits until omar approves it."""
    psql = subprocess.Popen(
        [
            "psql",
            f"host=127.0.0.1 port={port} user=dana password=dana dbname=demo",
            "-X",
            "-c",
            "DROP TABLE payments",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(home / "config"),
        "BASTION_ADMIN_URL": f"http://127.0.0.1:{admin_port}",
        "BASTION_PASSWORD": "omar",
    }

    def bastion(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "bastion.cli.main", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    bastion("login", "omar")
    deadline = time.monotonic() + 15
    while "DROP TABLE payments" not in (listed := bastion("approvals", "list")):
        assert time.monotonic() < deadline, listed
        time.sleep(0.2)
    assert psql.poll() is None, "the DROP must wait for omar"
    request_id = re.search(r"^\s*(\d+)\s", listed.split("DROP TABLE payments")[0].splitlines()[-1])
    assert request_id is not None, listed
    bastion("approvals", "approve", request_id.group(1), "--comment", "demo")
    stdout, stderr = psql.communicate(timeout=15)
    assert "DROP TABLE" in stdout, stderr
    assert "approval required" in stderr and "approved by omar" in stderr

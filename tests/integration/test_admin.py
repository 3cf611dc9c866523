"""The admin HTTP API answers health checks on its own listener, next to the proxy."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import psycopg

from bastion.demo.sample import SampleSummary
from support.bastion import BastionProcess
from support.servers import PostgresEndpoint

from .conftest import shop_target, upstream_env


def _get(port: int, path: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_health_and_readiness(
    tmp_path: Path, postgres_endpoint: PostgresEndpoint, shop_db: tuple[str, SampleSummary]
) -> None:
    proc = BastionProcess(
        workdir=tmp_path,
        targets=[shop_target(postgres_endpoint, shop_db[0])],
        env=upstream_env(postgres_endpoint),
        admin_port=0,
    ).start()
    try:
        assert proc.admin_port
        status, body = _get(proc.admin_port, "/healthz")
        assert status == 200 and body["status"] == "ok"
        assert _get(proc.admin_port, "/readyz") == (200, {"status": "ready"})
        with psycopg.connect(proc.dsn()) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        assert proc.stop() == 0

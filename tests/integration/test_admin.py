"""The admin HTTP API answers health checks on its own listener, next to the proxy."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest

from bastion.demo.sample import SampleSummary
from support.servers import PostgresEndpoint

from .conftest import running_shop_bastion


def _get(port: int, path: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_health_and_readiness(
    tmp_path: Path, postgres_endpoint: PostgresEndpoint, shop_db: tuple[str, SampleSummary]
) -> None:
    with running_shop_bastion(tmp_path, postgres_endpoint, shop_db, admin_port=0) as proc:
        assert proc.admin_port
        status, body = _get(proc.admin_port, "/healthz")
        assert status == 200 and body["status"] == "ok"
        assert _get(proc.admin_port, "/readyz") == (200, {"status": "ready"})
        with psycopg.connect(proc.dsn()) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert proc.stop() == 0


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_metrics_count_what_happened(
    tmp_path: Path, postgres_endpoint: PostgresEndpoint, shop_db: tuple[str, SampleSummary]
) -> None:
    with running_shop_bastion(tmp_path, postgres_endpoint, shop_db, admin_port=0) as proc:
        assert proc.admin_port
        with psycopg.connect(proc.dsn(), autocommit=True) as conn:
            for _ in range(5):
                conn.execute("SELECT 1")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("SELEC 1")  # not understood: refused by analysis.unknown
            during = _scrape(proc.admin_port)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(proc.dsn(password="wrong"))
        after = _scrape(proc.admin_port)
        assert proc.stop() == 0
    selects = 'bastion_statements_total{decision="allow",kind="select",outcome="ok",target="shop"}'
    assert during[selects] == 5
    assert during['bastion_denials_total{rule="analysis.unknown"}'] == 1
    assert during["bastion_sessions_active"] == 1
    assert after["bastion_sessions_active"] == 0
    assert after['bastion_sessions_total{outcome="ok",target="shop"}'] == 1
    assert after['bastion_sessions_total{outcome="refused",target="shop"}'] >= 1
    assert after['bastion_statement_duration_seconds_count{target="shop"}'] >= 5
    assert "bastion_audit_queue_depth" in after


def test_a_scrape_during_load_shows_consistent_counters(
    tmp_path: Path, postgres_endpoint: PostgresEndpoint, shop_db: tuple[str, SampleSummary]
) -> None:
    clients, per_client = 4, 150
    selects = 'bastion_statements_total{decision="allow",kind="select",outcome="ok",target="shop"}'
    scrapes: list[dict[str, float]] = []
    with running_shop_bastion(
        tmp_path, postgres_endpoint, shop_db, admin_port=0, extra={"audit": {"enabled": True}}
    ) as proc:
        assert proc.admin_port

        def work() -> None:
            with psycopg.connect(proc.dsn(), autocommit=True) as conn:
                for n in range(per_client):
                    conn.execute("SELECT %s::int", (n,))

        threads = [threading.Thread(target=work) for _ in range(clients)]
        for thread in threads:
            thread.start()
        while any(thread.is_alive() for thread in threads):
            scrapes.append(_scrape(proc.admin_port))
            time.sleep(0.02)
        for thread in threads:
            thread.join()
        final = _scrape(proc.admin_port)
        assert proc.stop() == 0
    assert len(scrapes) >= 3
    series = [s.get(selects, 0.0) for s in [*scrapes, final]]
    assert series == sorted(series), "a counter went backwards between scrapes"
    assert final[selects] == clients * per_client
    # Every statement counted is in the latency histograms too, and no scrape saw a histogram
    # count above the statement counter it belongs to.
    upstream = 'bastion_upstream_duration_seconds_count{target="shop"}'
    assert final[upstream] == final[selects]
    for scrape in scrapes:
        assert scrape.get(upstream, 0.0) <= scrape.get(selects, 0.0) + clients
    assert 0 <= final["bastion_audit_queue_depth"] <= clients * per_client
    assert final["bastion_sessions_active"] == 0

"""Idle connections: the resident memory a proxy adds per authenticated client it holds open.

Opens N client connections (each authenticated with SCRAM and having run one `SELECT 1`, so a
pooler has really attached a server connection to it), waits for the proxy to settle, reads
its VmRSS, and closes them. The upstream needs max_connections above N: Bastion opens one
server connection per client, and so does pgbouncer in session pooling once a client has run a
statement.
"""

from __future__ import annotations

import resource
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg

from bench.procfs import status_kib
from bench.stack import Endpoint

SETTLE_SECONDS = 2.0


def raise_fd_limit(needed: int) -> int:
    """Raise this process's open-file limit towards `needed` (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    return soft


def measure_idle(endpoint: Endpoint, count: int, workers: int = 8) -> dict[str, Any]:
    assert endpoint.pid is not None
    pid = endpoint.pid
    conninfo = endpoint.conninfo()
    # One connection first, so start-up allocations are not counted as per-connection cost.
    with psycopg.connect(conninfo, autocommit=True) as warm:
        warm.execute("SELECT 1")
    time.sleep(SETTLE_SECONDS)
    rss_before = status_kib(pid, "VmRSS")

    def open_one(_: int) -> psycopg.Connection[Any]:
        conn = psycopg.connect(conninfo, autocommit=True)
        conn.execute("SELECT 1")
        return conn

    connections: list[psycopg.Connection[Any]] = []
    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            connections = list(pool.map(open_one, range(count)))
        open_seconds = time.perf_counter() - started
        time.sleep(SETTLE_SECONDS)
        rss_after = status_kib(pid, "VmRSS")
        peak = status_kib(pid, "VmHWM")
        alive = sum(1 for conn in connections if not conn.closed)
    finally:
        for conn in connections:
            conn.close()
    added_kib = rss_after - rss_before
    return {
        "target": endpoint.name,
        "connections": count,
        "alive": alive,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "peak_rss_kib": peak,
        "added_rss_kib": added_kib,
        "added_rss_mib": round(added_kib / 1024, 1),
        "added_kib_per_connection": round(added_kib / count, 2),
        "open_seconds": round(open_seconds, 2),
        "connections_per_s": round(count / open_seconds, 1),
    }

"""Bastion's memory and time stay bounded whatever clients ask of it: results and COPY data of
any size stream through, a client that stops reading makes Bastion stop reading from the server,
a client that sends too much too early is not buffered without limit, one huge message does not
stall everyone else, hundreds of idle sessions cost little, and connections beyond the limit are
refused. Measured on a real Bastion process in front of a real PostgreSQL, from the kernel's own
accounting (VmRSS, and VmHWM reset before each measurement).
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import psycopg
import pytest

from bastion.wire.postgres import frontend
from support.bastion import BastionProcess, running_bastion
from support.rawpg import RawConnection
from support.servers import PostgresEndpoint, throwaway_postgres

ALICE, ALICE_PASSWORD = "alice", "alice-secret-1"
MIB = 1024  # in KiB, the unit of /proc/<pid>/status


class PeakMemory:
    """Bastion's peak RSS from now on, relative to its RSS now."""

    def __init__(self, proc: BastionProcess) -> None:
        self._proc = proc
        # Writing 5 resets VmHWM to the current RSS (Linux 4.0+), so earlier peaks don't count.
        Path(f"/proc/{proc.pid}/clear_refs").write_text("5")
        self.baseline_kib = proc.rss_kib()

    @property
    def growth_kib(self) -> int:
        return self._proc.peak_rss_kib() - self.baseline_kib


def _raw_session(
    proc: BastionProcess, tls: bool, application_name: str = "bastion-resources"
) -> RawConnection:
    conn = RawConnection.open("127.0.0.1", proc.port, timeout=30)
    if tls:
        conn.start_tls(ssl.create_default_context(cafile=str(proc.ca_file)), "127.0.0.1")
    conn.login(ALICE, ALICE_PASSWORD, database="shop", application_name=application_name)
    return conn


def _wide_rows(count: int) -> str:
    return f"SELECT g, repeat('x', 100) FROM generate_series(1, {count}) g"


@pytest.mark.parametrize(
    ("tls", "rows"),
    [
        (False, 3_000_000),
        (True, 3_000_000),
        pytest.param(False, 10_000_000, marks=pytest.mark.soak),
    ],
    ids=["plaintext", "tls", "plaintext-10M"],
)
def test_huge_result_streams_in_bounded_memory(
    bastion: BastionProcess, tls: bool, rows: int
) -> None:
    """Millions of rows (3M is about 350 MB) in one result. The rows are counted by a raw
    client reading at network speed; psql would spend most of the time formatting them.
    The 10-million-row run is a soak test: `pytest -m soak`."""
    with _raw_session(bastion, tls) as conn:
        assert conn.query(_wide_rows(100_000), timeout=30).rows == 100_000  # warm up
        peak = PeakMemory(bastion)
        result = conn.query(_wide_rows(rows), timeout=60 + rows / 50_000)
        growth = peak.growth_kib
    print(f"streaming {rows} rows ({'tls' if tls else 'plaintext'}): peak RSS +{growth} KiB")
    assert result.rows == rows
    assert result.tags == [f"SELECT {rows}"]
    assert growth < 60 * MIB


def test_huge_copy_out_and_in_stream_in_bounded_memory(bastion: BastionProcess) -> None:
    """About 100 MB each way, generated on the fly on both sides and never stored whole."""
    rows, block_rows = 1_000_000, 10_000
    block = b"".join(b"%d\t%s\n" % (i, b"y" * 100) for i in range(block_rows))
    with psycopg.connect(bastion.dsn()) as conn:
        conn.execute("CREATE TEMP TABLE sink (g int, x text)")
        peak = PeakMemory(bastion)
        received = 0
        copy_out = "COPY (SELECT g, repeat('x', 100) FROM generate_series(1, 1000000) g) TO STDOUT"
        with conn.cursor().copy(copy_out) as copy:
            for chunk in copy:
                received += len(chunk)
        out_growth = peak.growth_kib
        peak = PeakMemory(bastion)
        with conn.cursor().copy("COPY sink FROM STDIN") as copy:
            for _ in range(rows // block_rows):
                copy.write(block)
        in_growth = peak.growth_kib
        stored = conn.execute("SELECT count(*), sum(length(x)) FROM sink").fetchone()
    print(f"COPY out: peak RSS +{out_growth} KiB; COPY in: peak RSS +{in_growth} KiB")
    assert received == sum(len(str(g)) + 102 for g in range(1, rows + 1))
    assert stored == (rows, rows * 100)
    assert out_growth < 60 * MIB
    assert in_growth < 60 * MIB


def _server_wait(direct_dsn: str, application_name: str) -> tuple[str, str] | None:
    with psycopg.connect(direct_dsn, autocommit=True) as admin:
        row = admin.execute(
            "SELECT state, wait_event FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        ).fetchone()
    return None if row is None else (row[0], row[1])


@pytest.mark.parametrize("tls", [False, True], ids=["plaintext", "tls"])
def test_slow_reader_pauses_the_server(bastion: BastionProcess, direct_dsn: str, tls: bool) -> None:
    """A client that asks for 2 million rows (about 230 MB) and then reads nothing: Bastion's
    buffers fill, it stops reading from the server, and the server waits to write."""
    name = f"bastion-slow-reader-{uuid.uuid4().hex[:12]}"
    with _raw_session(bastion, tls, application_name=name) as conn:
        peak = PeakMemory(bastion)
        conn.send(frontend.encode_query(_wide_rows(2_000_000)))
        time.sleep(3)
        growth = peak.growth_kib
        server = _server_wait(direct_dsn, name)
        result = conn.read_until_ready(timeout=60)
    print(f"slow reader ({'tls' if tls else 'plaintext'}): peak RSS +{growth} KiB while paused")
    assert growth < 40 * MIB
    # Without backpressure the server would have sent everything and gone idle long ago.
    assert server == ("active", "ClientWrite")
    assert result.rows == 2_000_000
    assert result.tags == ["SELECT 2000000"]
    assert not result.errors


def _cpu_seconds(proc: BastionProcess) -> float:
    fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_one_huge_message_does_not_stall_other_sessions(bastion: BastionProcess) -> None:
    """A 48 MiB Bind parameter has to be held whole (Bastion inspects every Bind), but putting
    it together must cost time linear in its size: one thread serves every session, so while
    Bastion copies, everyone else waits."""
    size = 48 << 20
    latencies: list[float] = []
    done = threading.Event()
    with (
        psycopg.connect(bastion.dsn()) as sender,
        psycopg.connect(bastion.dsn(), autocommit=True) as witness,
    ):

        def watch() -> None:
            while not done.is_set():
                started = time.monotonic()
                witness.execute("SELECT 1")
                latencies.append(time.monotonic() - started)
                time.sleep(0.01)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            cpu_before = _cpu_seconds(bastion)
            row = sender.execute("SELECT length(%s::bytea)", (bytes(size),)).fetchone()
            cpu = _cpu_seconds(bastion) - cpu_before
        finally:
            done.set()
            watcher.join()
    worst = max(latencies)
    print(f"48 MiB Bind: Bastion CPU {cpu:.2f}s, slowest SELECT 1 elsewhere {worst:.3f}s")
    assert row == (size,)
    assert worst < 0.5
    assert cpu < 1.0


def test_client_flooding_before_its_session_is_ready_stays_bounded(
    tmp_path: Path, postgres_endpoint: PostgresEndpoint
) -> None:
    """While Bastion connects a client upstream, the client may already pipeline its first
    queries, but Bastion must stop reading once it holds a little of them: here the upstream
    accepts the connection and never answers, and the client pushes up to 200 MB."""
    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)  # the kernel completes the handshake; nobody ever answers
        with running_bastion(
            tmp_path,
            [
                {
                    **_target_on(postgres_endpoint),
                    "name": "mute",
                    "port": mute.getsockname()[1],
                    "connect_timeout_seconds": 2,
                }
            ],
        ) as proc:
            peak = PeakMemory(proc)
            with RawConnection.open("127.0.0.1", proc.port) as conn:
                conn.send_scram_proof(ALICE, ALICE_PASSWORD, database="mute")
                burst = frontend.encode_query("SELECT 1") * 100_000
                sent, deadline = 0, time.monotonic() + 1.5
                conn.sock.settimeout(0.5)
                try:
                    while sent < 200 << 20 and time.monotonic() < deadline:
                        conn.sock.sendall(burst)
                        sent += len(burst)
                except TimeoutError:
                    pass  # Bastion stopped reading: what it should do
                growth = peak.growth_kib
                assert conn.read_message(timeout=10).type == "R"  # SASLFinal
                error = conn.read_error(timeout=10)
            print(f"flood before ready: {sent >> 20} MB sent, peak RSS +{growth} KiB")
            assert error.sqlstate == "08006"
            assert growth < 40 * MIB
            assert proc.alive
            assert proc.stop() == 0


@pytest.fixture(scope="module")
def roomy_postgres() -> Iterator[PostgresEndpoint]:
    """A private server with room for more sessions than the shared one allows."""
    with throwaway_postgres(extra_settings={"max_connections": "400"}) as server:
        yield PostgresEndpoint(
            host=server.host,
            port=server.port,
            superuser=server.superuser,
            password=None,
            admin_conninfo=server.admin_dsn(),
        )


def _target_on(server: PostgresEndpoint) -> dict[str, object]:
    return {
        "name": "shop",
        "host": server.host,
        "port": server.port,
        "database": "postgres",
        "credentials": {"default": {"user": server.superuser}},
        "tls": "disable",
    }


def test_many_idle_sessions_are_cheap(tmp_path: Path, roomy_postgres: PostgresEndpoint) -> None:
    sessions = 300
    name = f"bastion-idle-{uuid.uuid4().hex[:12]}"
    with running_bastion(tmp_path, [_target_on(roomy_postgres)]) as proc:
        dsn = proc.dsn(application_name=name, connect_timeout=10)
        with psycopg.connect(dsn) as first:  # warm up: TLS, SCRAM, upstream, relay
            first.execute("SELECT 1")
        before = proc.rss_kib()
        started = time.monotonic()
        with ExitStack() as stack:
            conns = [stack.enter_context(psycopg.connect(dsn)) for _ in range(sessions)]
            opened = time.monotonic() - started
            pids = set()
            for conn in conns:
                row = conn.execute("SELECT pg_backend_pid()").fetchone()
                assert row is not None
                pids.add(row[0])
            after = proc.rss_kib()
            assert proc.alive
            assert len(pids) == sessions
        per_session = (after - before) / sessions
        print(
            f"{sessions} idle sessions opened in {opened:.1f}s: RSS {before} -> {after} KiB, "
            f"{per_session:.0f} KiB per session"
        )
        assert per_session < 300
        with psycopg.connect(roomy_postgres.admin_conninfo, autocommit=True) as admin:
            deadline = time.monotonic() + 10
            left = sessions
            while left and time.monotonic() < deadline:
                row = admin.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,)
                ).fetchone()
                assert row is not None
                left = row[0]
                time.sleep(0.1)
        assert left == 0, "server backends outlived their closed sessions"
        assert proc.alive
        assert proc.stop() == 0


def test_connections_beyond_the_limit_are_refused(
    tmp_path: Path, roomy_postgres: PostgresEndpoint
) -> None:
    """Clients that connect and say nothing hold a slot only until the startup deadline; while
    they hold every slot, more clients are refused, never queued."""
    with running_bastion(
        tmp_path,
        [_target_on(roomy_postgres)],
        extra={"limits": {"max_client_connections": 5, "startup_timeout_seconds": 1}},
    ) as proc:
        with ExitStack() as stack:
            for _ in range(5):
                stack.enter_context(RawConnection.open("127.0.0.1", proc.port))
            with RawConnection.open("127.0.0.1", proc.port) as extra:
                error = extra.read_error()
                assert (error.sqlstate, error.message) == (
                    "53300",
                    "too many connections to Bastion",
                )
                assert extra.wait_closed(5)
            time.sleep(1.5)  # the silent clients are cut off at the startup deadline
            with psycopg.connect(proc.dsn(connect_timeout=5)) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
        assert proc.alive
        assert proc.stop() == 0

"""pgbench workloads: what each one runs, how one run is measured, and the check on its output.

A run is one pgbench invocation against one endpoint. While it runs, nothing else measures; the
proxy's CPU time (utime + stime from /proc) and peak resident memory (VmHWM, reset before the
run) are read around it. Latency percentiles come from pgbench's per-transaction logs, not from
its averages. `check_run` refuses a run that processed no transaction, lost a client or failed
a transaction, so a broken set-up can never pass for a slow one.
"""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.procfs import CpuAccount, reset_peak_rss, status_kib
from bench.stack import Endpoint

SELECT_ONLY = "select-only"
TPCB = "tpcb-like"
WIDE_SCRIPT = "SELECT * FROM wide;\n"
CONNECT_SCRIPT = "SELECT 1;\n"


class RunFailed(RuntimeError):
    """A pgbench run reported no transactions, errors or failed transactions."""


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    group: str  # "select-only", "tpcb", "wide", "connect"
    clients: int
    protocol: str = "simple"  # pgbench -M
    builtin: str | None = None  # pgbench -b
    script: str | None = None  # a custom script's text (pgbench -f)
    connect_per_transaction: bool = False  # pgbench -C
    rows_per_transaction: int | None = None
    statements_per_transaction: int = 1

    @property
    def threads(self) -> int:
        return min(2, self.clients)


def select_only(protocol: str, clients: int) -> Workload:
    return Workload(
        key=f"select-{protocol}-c{clients}",
        title=f"select-only, {protocol} protocol, {clients} client{'s' if clients > 1 else ''}",
        group="select-only",
        clients=clients,
        protocol=protocol,
        builtin=SELECT_ONLY,
    )


TPCB_C8 = Workload(
    key="tpcb-c8",
    title="TPC-B-like (default pgbench script), 8 clients",
    group="tpcb",
    clients=8,
    builtin=TPCB,
    statements_per_transaction=7,  # BEGIN, 3 UPDATEs, SELECT, INSERT, END
)
WIDE_C8 = Workload(
    key="wide-c8",
    title="wide result (SELECT * FROM wide: 1,000 rows x 6 columns), 8 clients",
    group="wide",
    clients=8,
    script=WIDE_SCRIPT,
    rows_per_transaction=1000,
)
CONNECT_C8 = Workload(
    key="connect-c8",
    title="connection storm (pgbench -C: connect, SELECT 1, disconnect), 8 clients",
    group="connect",
    clients=8,
    script=CONNECT_SCRIPT,
    connect_per_transaction=True,
)


def full_workloads() -> list[Workload]:
    selects = [select_only(p, c) for c in (1, 8, 32) for p in ("simple", "extended", "prepared")]
    return [*selects, TPCB_C8, WIDE_C8, CONNECT_C8]


def quick_workloads() -> list[Workload]:
    return [select_only("simple", 8), select_only("prepared", 8), WIDE_C8]


@dataclass
class RunResult:
    workload: str
    target: str
    round: int
    duration_s: int
    exit_code: int
    transactions: int
    failed: int
    tps: float
    latency_ms: dict[str, float]  # mean, p50, p90, p99 over every transaction
    proxy_cpu_s: float | None = None
    proxy_cpu_us_per_txn: float | None = None  # user + system
    proxy_user_us_per_txn: float | None = None
    proxy_sys_us_per_txn: float | None = None
    proxy_peak_rss_kib: int | None = None
    client_cpu_us_per_txn: float | None = None  # pgbench
    server_cpu_us_per_txn: float | None = None  # PostgreSQL, all its processes
    other_cpu_share: float | None = None  # foreign load, share of all cores during the run
    audit_statement_lines: int | None = None
    rows_per_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def pgbench_command(
    workload: Workload, duration: int, log_prefix: Path, script: Path | None
) -> list[str]:
    command = ["pgbench", "-n", "-M", workload.protocol, "-c", str(workload.clients)]
    command += ["-j", str(workload.threads), "-T", str(duration)]
    command += ["--log", f"--log-prefix={log_prefix}"]
    if workload.builtin is not None:
        command += ["-b", workload.builtin]
    else:
        assert script is not None
        command += ["-f", str(script)]
    if workload.connect_per_transaction:
        command.append("-C")
    return command


def run_pgbench(
    workload: Workload,
    endpoint: Endpoint,
    *,
    duration: int,
    round_no: int,
    server_pid: int,
    audit_lines: Any = None,  # callable returning the audit statement lines since the start
) -> tuple[RunResult, str]:
    """Run one workload against one endpoint; returns the measurements and pgbench's output."""
    log_dir = Path(tempfile.mkdtemp(prefix="bench-txlog-"))
    try:
        script = None
        if workload.script is not None:
            script = log_dir / "script.sql"
            script.write_text(workload.script)
        command = pgbench_command(workload, duration, log_dir / "tx", script)
        pid = endpoint.pid
        if pid is not None:
            reset_peak_rss(pid)
        account = CpuAccount.start(pid, server_pid)
        result = subprocess.run(
            command,
            env=endpoint.env(),
            capture_output=True,
            text=True,
            timeout=duration + 120,
            check=False,
        )
        account.stop()
        output = result.stdout + result.stderr
        parsed = parse_output(output)
        latencies = read_latencies(log_dir)
        run = RunResult(
            workload=workload.key,
            target=endpoint.name,
            round=round_no,
            duration_s=duration,
            exit_code=result.returncode,
            transactions=parsed["transactions"],
            failed=parsed["failed"],
            tps=parsed["tps"],
            latency_ms=latency_summary(latencies),
        )
        txns = run.transactions

        def per_txn(seconds: float) -> float | None:
            return round(seconds * 1e6 / txns, 2) if txns else None

        run.client_cpu_us_per_txn = per_txn(account.client_s)
        run.server_cpu_us_per_txn = per_txn(account.server_s)
        run.other_cpu_share = round(account.other_share, 3)
        if pid is not None:
            run.proxy_cpu_s = round(account.proxy_s, 3)
            run.proxy_cpu_us_per_txn = per_txn(account.proxy_s)
            run.proxy_user_us_per_txn = per_txn(account.proxy_user_s)
            run.proxy_sys_us_per_txn = per_txn(account.proxy_sys_s)
            run.proxy_peak_rss_kib = status_kib(pid, "VmHWM")
        if audit_lines is not None:
            run.audit_statement_lines = audit_lines()
        if workload.rows_per_transaction:
            run.rows_per_s = round(run.tps * workload.rows_per_transaction, 1)
        return run, output
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)


_TRANSACTIONS_RE = re.compile(r"^number of transactions actually processed: (\d+)", re.M)
_FAILED_RE = re.compile(r"^number of failed transactions: (\d+)", re.M)
_TPS_RE = re.compile(r"^tps = ([0-9.]+)", re.M)
_ABORTED_RE = re.compile(r"aborted|fatal|error:", re.I)


def parse_output(output: str) -> dict[str, Any]:
    """The totals pgbench prints at the end of a run (PostgreSQL 15's format)."""
    transactions = _TRANSACTIONS_RE.search(output)
    failed = _FAILED_RE.search(output)
    tps = _TPS_RE.search(output)
    return {
        "transactions": int(transactions.group(1)) if transactions else 0,
        "failed": int(failed.group(1)) if failed else 0,
        "tps": float(tps.group(1)) if tps else 0.0,
        "errors": [line for line in output.splitlines() if _ABORTED_RE.search(line)],
    }


def read_latencies(log_dir: Path) -> list[float]:
    """Per-transaction latencies in ms from pgbench --log files (third field, microseconds)."""
    values: list[float] = []
    for path in sorted(log_dir.glob("tx.*")):
        with path.open() as log:
            for line in log:
                fields = line.split(maxsplit=3)
                if len(fields) >= 3 and fields[2].isdigit():
                    values.append(int(fields[2]) / 1000.0)
    return values


def latency_summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p / 100.0 * len(ordered)))], 4)

    return {
        "mean": round(statistics.fmean(ordered), 4),
        "p50": pct(50),
        "p90": pct(90),
        "p99": pct(99),
        "samples": len(ordered),
    }


def check_run(run: RunResult, output: str, workload: Workload) -> None:
    """The harness's self-check: refuse a run with no transactions or with errors.

    Raises RunFailed, with pgbench's own words, when pgbench exited non-zero, processed no
    transaction, reported failed transactions or aborted clients, wrote no per-transaction log,
    or when a governed Bastion wrote fewer audit lines than statements it relayed.
    """
    problems: list[str] = []
    parsed = parse_output(output)
    if run.exit_code != 0:
        problems.append(f"pgbench exited with status {run.exit_code}")
    if run.transactions <= 0:
        problems.append("pgbench processed 0 transactions")
    if run.failed:
        problems.append(f"{run.failed} transactions failed")
    if parsed["errors"]:
        problems.append("pgbench reported errors")
    if run.transactions and not run.latency_ms:
        problems.append("pgbench wrote no per-transaction log")
    if run.tps <= 0:
        problems.append("pgbench reported no tps")
    if run.target == "bastion-passthrough" and run.audit_statement_lines:
        problems.append("the passthrough profile wrote statement audit lines")
    elif run.audit_statement_lines is not None and run.target != "bastion-passthrough":
        expected = run.transactions * workload.statements_per_transaction
        if run.audit_statement_lines < expected:
            problems.append(
                f"{run.target} wrote {run.audit_statement_lines} statement audit lines for"
                f" {expected} statements"
            )
    if problems:
        excerpt = "\n".join(output.strip().splitlines()[-25:])
        raise RunFailed(
            f"{workload.key} against {run.target} (round {run.round}): "
            + "; ".join(problems)
            + f"\n--- pgbench output ---\n{excerpt}"
        )

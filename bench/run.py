"""Bastion's benchmark: pgbench through Bastion, side by side with direct and pgbouncer.

Starts a throwaway PostgreSQL (loaded with `pgbench -i -s 10` and a wide table), pgbouncer and
three Bastion profiles, runs every workload against every target in interleaved rounds, measures
an idle-connection load, runs the stage micro-benchmarks, then writes the results JSON and
regenerates docs/benchmarks.md. `make bench` runs it in full; `make bench-quick` in under two
minutes. A run with no transactions or with errors stops everything (see workloads.check_run).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script: import the harness as the `bench` package and shadow nothing.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import idle, micro, page, procfs, report, stack, workloads
from bench.stack import BastionServer, Endpoint, Pgbouncer
from bench.workloads import RunFailed, Workload

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
DOC = REPO / "docs" / "benchmarks.md"
MAIN_SERVER_SETTINGS = {"max_connections": "200", "shared_buffers": "128MB"}
# 1,000 clients through Bastion are 1,000 server backends; keep each one small.
IDLE_SERVER_SETTINGS = {"max_connections": "1100", "shared_buffers": "16MB"}
PAUSE_BETWEEN_RUNS_S = 0.3


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark Bastion against a direct connection and pgbouncer."
    )
    parser.add_argument("--quick", action="store_true", help="a run of under two minutes")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3, quick 1)")
    parser.add_argument("--duration", type=int, help="seconds per run (default 5, quick 4)")
    parser.add_argument("--scale", type=int, default=10, help="pgbench scale factor")
    parser.add_argument(
        "--workloads",
        help="comma-separated workload keys to run (default: all of the mode; none: only the"
        " idle-connection test)",
    )
    parser.add_argument(
        "--idle-connections",
        type=int,
        help="idle clients to open for the memory test (default 1000, quick 0 = skip)",
    )
    parser.add_argument("--no-micro", action="store_true", help="skip the micro-benchmarks")
    parser.add_argument(
        "--no-install", action="store_true", help="never install pgbouncer with apt-get"
    )
    parser.add_argument("--output", type=Path, help="results JSON to write")
    parser.add_argument("--doc", type=Path, help="markdown page to regenerate")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="redraw the markdown page from an existing results JSON, run nothing",
    )
    parser.add_argument(
        "--self-test", action="store_true", help="check the harness's own run check, then exit"
    )
    parser.add_argument(
        "--ref",
        help="benchmark Bastion as committed at this git revision (e.g. HEAD) instead of the"
        " working tree",
    )
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.duration = args.duration or (4 if args.quick else 5)
    if args.idle_connections is None:
        args.idle_connections = 0 if args.quick else 1000
    if args.output is None:
        args.output = RESULTS_DIR / ("quick.json" if args.quick else "latest.json")
    if args.doc is None and not args.quick:
        args.doc = DOC
    return args


# Facts about the machine and the software under test.


def machine_facts(pgbouncer_version: str, bastion: str) -> dict[str, Any]:
    cpu_model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    memory_kib = procfs.kib_field("/proc/meminfo", "MemTotal")
    pgbench = subprocess.run(["pgbench", "--version"], capture_output=True, text=True)
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "postgresql": stack.postgres_version(),
        "pgbench": pgbench.stdout.strip(),
        "pgbouncer": pgbouncer_version,
        "bastion_commit": bastion,
    }


# The run.


class Bench:
    """Owns every process of one benchmark run and stops them all, whatever happens."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work_dir = Path(tempfile.mkdtemp(prefix="bastion-bench-"))
        self.work_dir.chmod(0o755)  # pgbouncer runs as the postgres account and reads its dir
        self.cleanups: list[Callable[[], None]] = []
        self.runs: list[dict[str, Any]] = []
        self.bastion_env: dict[str, str] = {}  # how Bastion processes find the measured source
        self.bastion = stack.working_tree_description()
        if args.ref:
            self.bastion_env, self.bastion = stack.export_source(args.ref, self.work_dir / "ref")

    def run_micro(self) -> dict[str, Any]:
        """The stage micro-benchmarks, in a child process that imports the measured source."""
        command = [sys.executable, str(Path(micro.__file__)), "--json"]
        if self.args.quick:
            command.append("--quick")
        result = subprocess.run(
            command,
            env={**os.environ, **self.bastion_env},
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise stack.StackError(f"micro-benchmarks failed:\n{result.stderr}")
        measured: dict[str, Any] = json.loads(result.stdout)
        for name, entry in measured.items():
            log(f"  {name:32s} {entry['median_ns'] / 1000:9.2f} µs")
        return measured

    def close(self) -> None:
        self.close_processes()
        if self.args.keep:
            log(f"working directory kept: {self.work_dir}")
        else:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def start_bastion(self, profile: str, port: int, dbname: str, tag: str) -> BastionServer:
        server = BastionServer(
            profile, self.work_dir / f"{tag}-{profile}", port, dbname, env=self.bastion_env
        )
        self.cleanups.append(server.stop)
        return server.start()

    def start_pgbouncer(
        self, binary: Path, port: int, dbname: str, tag: str, **kw: Any
    ) -> Pgbouncer:
        bouncer = Pgbouncer(binary, self.work_dir / f"{tag}-pgbouncer", port, dbname, **kw)
        self.cleanups.append(bouncer.stop)
        return bouncer.start()

    def run_workloads(
        self,
        selected: list[Workload],
        endpoints: list[Endpoint],
        bastions: dict[str, BastionServer],
        server_pid: int,
    ) -> None:
        args = self.args
        total = len(selected) * args.rounds * len(endpoints)
        done = 0
        for workload in selected:
            for round_no in range(1, args.rounds + 1):
                for endpoint in endpoints:
                    server = bastions.get(endpoint.name)
                    if server is not None:
                        server.truncate_log()
                    run, output = workloads.run_pgbench(
                        workload,
                        endpoint,
                        duration=args.duration,
                        round_no=round_no,
                        server_pid=server_pid,
                        audit_lines=server.statement_lines if server else None,
                    )
                    workloads.check_run(run, output, workload)
                    self.runs.append(run.as_dict())
                    done += 1
                    cpu = run.proxy_cpu_us_per_txn
                    log(
                        f"[{done}/{total}] {workload.key:20s} {endpoint.name:20s}"
                        f" round {round_no}: {run.tps:10,.1f} tps"
                        f"  p50 {run.latency_ms['p50']:.3f} ms"
                        + (f"  proxy cpu {cpu:.1f} µs/txn" if cpu is not None else "")
                        + f"  other load {run.other_cpu_share:.0%}"
                    )
                    time.sleep(PAUSE_BETWEEN_RUNS_S)

    def warm_up(self, endpoints: list[Endpoint], server_pid: int) -> None:
        """A short unmeasured run per target: caches, JIT-less interpreters and pools warm up."""
        warm = workloads.select_only("prepared", 8)
        for endpoint in endpoints:
            run, output = workloads.run_pgbench(
                warm, endpoint, duration=1, round_no=0, server_pid=server_pid
            )
            workloads.check_run(run, output, warm)

    def main_benchmark(self, selected: list[Workload], bouncer_binary: Path | None) -> None:
        args = self.args
        log("starting PostgreSQL")
        pg = stack.start_postgres(MAIN_SERVER_SETTINGS)
        self.cleanups.append(pg.stop)
        log(f"loading pgbench scale {args.scale} and the wide table")
        stack.load_database(pg, args.scale)
        endpoints = [stack.direct_endpoint(pg)]
        if bouncer_binary is not None:
            bouncer = self.start_pgbouncer(bouncer_binary, pg.port, stack.DATABASE, "main")
            endpoints.append(bouncer.endpoint())
        bastions: dict[str, BastionServer] = {}
        for profile in stack.BASTION_PROFILES:
            server = self.start_bastion(profile, pg.port, stack.DATABASE, "main")
            bastions[server.name] = server
            endpoints.append(server.endpoint())
        log("warming up: " + ", ".join(e.name for e in endpoints))
        server_pid = stack.postmaster_pid(pg)
        self.warm_up(endpoints, server_pid)
        self.run_workloads(selected, endpoints, bastions, server_pid)
        self.close_processes()

    def close_processes(self) -> None:
        """Stop every process started so far (the working directory stays)."""
        for cleanup in reversed(self.cleanups):
            try:
                cleanup()
            except Exception as exc:  # keep stopping the rest
                log(f"cleanup failed: {exc}")
        self.cleanups.clear()

    def idle_benchmark(self, bouncer_binary: Path | None) -> dict[str, Any]:
        count = self.args.idle_connections
        idle.raise_fd_limit(count * 3 + 1024)
        log(f"idle connections: starting PostgreSQL with max_connections 1100 for {count} clients")
        pg = stack.start_postgres(IDLE_SERVER_SETTINGS)
        self.cleanups.append(pg.stop)
        targets: dict[str, Any] = {}
        server = self.start_bastion("passthrough", pg.port, "postgres", "idle")
        log(f"idle connections: {count} clients to {server.name}")
        targets[server.name] = idle.measure_idle(server.endpoint(), count)
        server.stop()
        time.sleep(2)  # let the server's backends exit before the next target
        if bouncer_binary is not None:
            bouncer = self.start_pgbouncer(
                bouncer_binary,
                pg.port,
                "postgres",
                "idle",
                pool_size=count + 10,
                max_clients=count + 100,
            )
            log(f"idle connections: {count} clients to pgbouncer")
            targets["pgbouncer"] = idle.measure_idle(bouncer.endpoint(), count)
        self.close_processes()
        return {"connections": count, "targets": targets}


def select_workloads(args: argparse.Namespace) -> list[Workload]:
    available = workloads.full_workloads()
    if args.workloads == "none":
        return []
    if args.workloads:
        keys = [k.strip() for k in args.workloads.split(",") if k.strip()]
        by_key = {w.key: w for w in available}
        unknown = [k for k in keys if k not in by_key]
        if unknown:
            raise SystemExit(f"unknown workloads {unknown}; known: {sorted(by_key)}")
        return [by_key[k] for k in keys]
    return workloads.quick_workloads() if args.quick else available


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    selected = select_workloads(args)
    bouncer = stack.find_pgbouncer(install=not args.no_install)
    if bouncer.binary is None:
        log(f"pgbouncer unavailable: {bouncer.reason}; continuing without its ratios")
    bench = Bench(args)
    results: dict[str, Any] = {
        "machine": machine_facts(bouncer.version, bench.bastion),
        "settings": {
            "mode": "quick" if args.quick else "full",
            "rounds": args.rounds,
            "duration_s": args.duration,
            "scale": args.scale,
            "idle_connections": args.idle_connections,
        },
        "pgbouncer_unavailable": bouncer.reason or None,
    }
    try:
        if not args.no_micro:
            log("micro-benchmarks of the per-statement stages")
            results["micro"] = bench.run_micro()
        if selected:
            bench.main_benchmark(selected, bouncer.binary)
        results["idle"] = bench.idle_benchmark(bouncer.binary) if args.idle_connections else None
    finally:
        bench.close()
    workload_facts = [
        {
            "key": w.key,
            "title": w.title,
            "group": w.group,
            "clients": w.clients,
            "threads": w.threads,
            "protocol": w.protocol,
            "connect_per_transaction": w.connect_per_transaction,
            "rows_per_transaction": w.rows_per_transaction,
        }
        for w in selected
    ]
    results["workloads"] = workload_facts
    results["runs"] = bench.runs
    results["summary"] = report.summarize(bench.runs, workload_facts)
    results["targets"] = report.evaluate(results["summary"], results["idle"])
    hotspots = RESULTS_DIR / "hotspots.json"
    if hotspots.exists():
        results["hotspots"] = json.loads(hotspots.read_text())
    results["settings"]["elapsed_s"] = round(time.monotonic() - started, 1)
    return results


def print_summary(results: dict[str, Any]) -> None:
    for entry in results["summary"].values():
        print(f"\n{entry['title']}")
        for target, data in entry["targets"].items():
            ratios = "  ".join(
                f"{name} {data[key]:.2f}x"
                for name, key in (("vs direct", "vs_direct"), ("vs pgbouncer", "vs_pgbouncer"))
                if data[key] is not None and target not in ("direct", name.split()[-1])
            )
            cpu = data["proxy_cpu_us_per_txn"]
            print(
                f"  {target:20s} {data['tps']:10,.1f} tps  p50 {data['latency_ms']['p50']:.3f}"
                f" ms  p99 {data['latency_ms']['p99']:.3f} ms"
                + (f"  cpu {cpu:6.1f} µs/txn" if cpu is not None else "")
                + (f"  {ratios}" if ratios else "")
            )
    if results.get("idle"):
        print(f"\n{results['idle']['connections']} idle connections")
        for name, entry in results["idle"]["targets"].items():
            print(f"  {name:20s} +{entry['added_rss_kib'] / 1024:.1f} MiB")
    print("\ntargets")
    for verdict in results["targets"]:
        print(f"  {verdict['status']:12s} {verdict['goal']}: {verdict['margin']}")


def self_test() -> int:
    """Feed the run check canned pgbench outputs: good ones pass, broken ones must raise."""
    good = (
        "number of transactions actually processed: 1200\n"
        "number of failed transactions: 0 (0.000%)\ntps = 240.5 (without initial connection"
        " time)\n"
    )
    zero = good.replace("1200", "0")
    failed = good.replace("failed transactions: 0", "failed transactions: 3")
    aborted = good + "pgbench: error: client 0 script 0 aborted in command 1 query 0\n"
    workload = workloads.select_only("simple", 8)
    cases = [
        ("a clean run passes", good, 0, False),
        ("0 transactions fail", zero, 0, True),
        ("failed transactions fail", failed, 0, True),
        ("aborted clients fail", aborted, 2, True),
        ("a non-zero exit fails", good, 1, True),
    ]
    passed = failed_count = 0
    for name, output, code, should_fail in cases:
        parsed = workloads.parse_output(output)
        result = workloads.RunResult(
            workload=workload.key,
            target="bastion-governed",
            round=1,
            duration_s=5,
            exit_code=code,
            transactions=parsed["transactions"],
            failed=parsed["failed"],
            tps=parsed["tps"],
            latency_ms={"p50": 1.0} if parsed["transactions"] else {},
            audit_statement_lines=parsed["transactions"],
        )
        try:
            workloads.check_run(result, output, workload)
            raised = False
        except RunFailed:
            raised = True
        ok = raised == should_fail
        passed += ok
        failed_count += not ok
        print(f"  {'ok  ' if ok else 'FAIL'} {name}")
    print(f"self-test: {passed} passed, {failed_count} failed")
    return 0 if failed_count == 0 else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.self_test:
        return self_test()
    if args.render_only:
        results = report.refresh(json.loads(args.output.read_text()))
        args.output.write_text(json.dumps(results, indent=2) + "\n")
        (args.doc or DOC).write_text(page.render(results))
        log(f"wrote {args.doc or DOC}")
        return 0
    try:
        results = run(args)
    except RunFailed as exc:
        log(f"SELF-CHECK FAILED, no results written:\n{exc}")
        return 1
    except stack.StackError as exc:
        log(f"could not set up the benchmark: {exc}")
        return 2
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {args.output}")
    if args.doc is not None:
        args.doc.write_text(page.render(results))
        log(f"wrote {args.doc}")
    print_summary(results)
    log(f"finished in {results['settings']['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where Bastion spends its time: a py-spy profile of Bastion under pgbench.

Starts the benchmark's PostgreSQL and one Bastion profile (governed by default), drives it with
a pgbench workload (select-only with prepared statements at 8 clients unless told otherwise),
samples Bastion with `py-spy record --nonblocking` for a few seconds, and ranks functions by own
time (the function itself) and total time (with what it calls). Writes
bench/results/hotspots.json, which `bench/run.py` includes in docs/benchmarks.md, and prints the
ranking.

Needs py-spy (`pip install py-spy`; it is in Bastion's virtual environment) and the right to
trace the Bastion process (root, or ptrace_scope 0).
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script: import the harness as the `bench` package and shadow nothing.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import stack, workloads
from bench.stack import BastionServer

RESULTS = Path(__file__).resolve().parent / "results" / "hotspots.json"


def py_spy_binary() -> str:
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if not found:
        raise SystemExit("py-spy not found: pip install py-spy")
    return found


def _function(frame: str) -> tuple[str, str]:
    """'feed (bastion/session/relay.py:64)' -> ('feed', 'bastion/session/relay.py')."""
    name, _, rest = frame.partition(" (")
    location = rest.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/src/", "lib/python3."):
        if marker in location:
            location = location.split(marker, 1)[1]
            if marker == "lib/python3.":
                location = "python3." + location
    return name.strip(), location


def summarize(raw: str, top: int = 25) -> dict[str, Any]:
    """Own and total sample counts per function from py-spy's collapsed-stack output."""
    own: Counter[tuple[str, str]] = Counter()
    total: Counter[tuple[str, str]] = Counter()
    lines: Counter[str] = Counter()
    samples = 0
    for line in raw.splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(f) for f in stack_text.split(";") if "(" in f]
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        lines[stack_text.rsplit(";", 1)[-1]] += count
        for function in set(frames):
            total[function] += count

    def entry(function: tuple[str, str]) -> dict[str, Any]:
        return {
            "function": function[0],
            "location": function[1],
            "self_pct": round(100.0 * own[function] / samples, 2),
            "total_pct": round(100.0 * total[function] / samples, 2),
        }

    return {
        "samples": samples,
        "top_self": [entry(f) for f, _ in own.most_common(top)],
        "top_total": [entry(f) for f, _ in total.most_common(top)],
        # Own time by source line: C calls (a socket write, a parser) show on the calling line.
        "top_lines": [
            {"line": _line(frame), "self_pct": round(100.0 * n / samples, 2)}
            for frame, n in lines.most_common(top)
        ],
    }


def _line(frame: str) -> str:
    """'feed (bastion/session/relay.py:88)' -> 'feed (bastion/session/relay.py:88)', shortened."""
    name, location = _function(frame)
    number = frame.rstrip(")").rsplit(":", 1)[-1]
    return f"{name} ({location}:{number})"


def profile(args: argparse.Namespace) -> dict[str, Any]:
    work_dir = Path(tempfile.mkdtemp(prefix="bastion-hotspots-"))
    pg = stack.start_postgres({"max_connections": "200", "shared_buffers": "128MB"})
    server: BastionServer | None = None
    try:
        print(f"hotspots: loading pgbench scale {args.scale}", file=sys.stderr)
        stack.load_database(pg, args.scale)
        env: dict[str, str] = {}
        bastion = stack.working_tree_description()
        if args.ref:
            env, bastion = stack.export_source(args.ref, work_dir / "ref")
        server = BastionServer(args.profile, work_dir / args.profile, pg.port, env=env).start()
        workload = {w.key: w for w in workloads.full_workloads()}[args.workload]
        endpoint = server.endpoint()
        script_dir = work_dir / "pgbench"
        script_dir.mkdir()
        script = None
        if workload.script is not None:
            script = script_dir / "script.sql"
            script.write_text(workload.script)
        warm_up = 3
        command = workloads.pgbench_command(
            workload, args.seconds + warm_up + 2, script_dir / "tx", script
        )
        client = subprocess.Popen(
            command, env=endpoint.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        time.sleep(warm_up)
        raw_path = work_dir / "profile.txt"
        print(f"hotspots: sampling {server.name} for {args.seconds} s", file=sys.stderr)
        spy = [py_spy_binary(), "record", "-p", str(server.pid), "-d", str(args.seconds)]
        spy += ["-f", "raw", "-o", str(raw_path), "--nonblocking", "-r", str(args.rate)]
        subprocess.run(spy, check=True, capture_output=True)
        output, _ = client.communicate(timeout=args.seconds + 120)
        parsed = workloads.parse_output(output)
        if client.returncode != 0 or not parsed["transactions"]:
            raise SystemExit(f"pgbench failed while profiling:\n{output}")
        raw = raw_path.read_text()
        if args.raw is not None:
            args.raw.write_text(raw)
        result = summarize(raw)
        return {
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "target": server.name,
            "bastion_commit": bastion,
            "workload": workload.title,
            "seconds": args.seconds,
            "tps": parsed["tps"],
            **result,
        }
    finally:
        if server is not None:
            server.stop()
        pg.stop()
        shutil.rmtree(work_dir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="governed", choices=stack.BASTION_PROFILES)
    parser.add_argument(
        "--workload",
        default="select-prepared-c8",
        choices=[w.key for w in workloads.full_workloads()],
        help="the pgbench workload that drives Bastion (default: select-prepared-c8)",
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--ref", help="profile Bastion as committed at this git revision")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--raw", type=Path, help="also keep py-spy's collapsed stacks here")
    args = parser.parse_args()
    result = profile(args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{result['target']} under {result['workload']}: {result['tps']:,.0f} tps")
    print(f"{result['samples']:,} samples while Bastion was busy\n")
    print(f"{'own %':>7} {'total %':>8}  function")
    for f in result["top_self"][:20]:
        print(f"{f['self_pct']:7.1f} {f['total_pct']:8.1f}  {f['function']} ({f['location']})")
    print(f"\n{'own %':>7}  source line")
    for line in result["top_lines"][:12]:
        print(f"{line['self_pct']:7.1f}  {line['line']}")
    print(f"\n{'total %':>8}  function (by total time)")
    for f in result["top_total"][:20]:
        print(f"{f['total_pct']:8.1f}  {f['function']} ({f['location']})")
    print(f"\nwrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

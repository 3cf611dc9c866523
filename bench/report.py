"""From raw runs to conclusions: per-target medians, ratios, the targets' pass/miss.

`summarize` folds the runs of every round into one line per workload and target (median TPS,
latency and CPU per transaction, peak memory, ratios to direct and to pgbouncer); `evaluate`
checks the published targets against it. `bench/page.py` turns the result into the page.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

DIRECT = "direct"
PGBOUNCER = "pgbouncer"
GOVERNED = "bastion-governed"
TARGET_ORDER = (
    DIRECT,
    PGBOUNCER,
    "bastion-passthrough",
    "bastion-governed",
    "bastion-masking",
)


_PER_TXN = (
    "proxy_cpu_us_per_txn",
    "proxy_user_us_per_txn",
    "proxy_sys_us_per_txn",
    "server_cpu_us_per_txn",
    "client_cpu_us_per_txn",
)


def _median(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _ratio(value: float | None, base: float | None) -> float | None:
    if value is None or not base:
        return None
    return round(value / base, 3)


def summarize(runs: list[dict[str, Any]], workloads: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for workload in workloads:
        key = workload["key"]
        targets: dict[str, Any] = {}
        for target in TARGET_ORDER:
            mine = [r for r in runs if r["workload"] == key and r["target"] == target]
            if not mine:
                continue
            peaks = [r["proxy_peak_rss_kib"] for r in mine if r["proxy_peak_rss_kib"]]
            targets[target] = {
                "rounds": len(mine),
                "tps": round(_median([r["tps"] for r in mine]) or 0.0, 1),
                "tps_rounds": [round(r["tps"], 1) for r in mine],
                "rows_per_s": _median([r["rows_per_s"] for r in mine]),
                "latency_ms": {
                    name: _median([r["latency_ms"].get(name) for r in mine])
                    for name in ("mean", "p50", "p90", "p99")
                },
                **{name: _median([r.get(name) for r in mine]) for name in _PER_TXN},
                "proxy_peak_rss_mib": round(max(peaks) / 1024, 1) if peaks else None,
                "other_cpu_share_max": max((r.get("other_cpu_share") or 0.0) for r in mine),
            }
        direct, bouncer = targets.get(DIRECT), targets.get(PGBOUNCER)
        governed = targets.get(GOVERNED)
        for entry in targets.values():
            entry["vs_direct"] = _ratio(entry["tps"], direct["tps"] if direct else None)
            entry["vs_pgbouncer"] = _ratio(entry["tps"], bouncer["tps"] if bouncer else None)
            entry["vs_governed"] = _ratio(entry["tps"], governed["tps"] if governed else None)
            for name in ("p50", "mean"):
                mine, base = entry["latency_ms"][name], (direct or {}).get("latency_ms", {})
                added = None
                if mine is not None and base.get(name) is not None:
                    added = round(mine - base[name], 4)
                entry[f"added_{name}_ms"] = added
        summary[key] = {**workload, "targets": targets}
    return summary


@dataclass(frozen=True)
class Target:
    id: str
    goal: str
    workload: str  # a workload key, or "idle"
    target: str
    metric: str
    at_least: float | None = None
    at_most: float | None = None
    unit: str = "x"


TARGETS = (
    Target("select-simple-8", "select-only, 8 clients, simple protocol: governed TPS at least"
           " 0.9x pgbouncer", "select-simple-c8", "bastion-governed", "vs_pgbouncer", 0.9),
    Target("select-extended-8", "select-only, 8 clients, extended protocol: governed TPS at"
           " least 0.8x pgbouncer", "select-extended-c8", "bastion-governed", "vs_pgbouncer", 0.8),
    Target("select-prepared-8", "select-only, 8 clients, prepared statements: governed TPS at"
           " least 0.8x pgbouncer", "select-prepared-c8", "bastion-governed", "vs_pgbouncer", 0.8),
    Target("latency-simple-1", "1 client, simple protocol: governed adds at most 0.12 ms per"
           " round trip (median) over direct", "select-simple-c1", "bastion-governed",
           "added_p50_ms", at_most=0.12, unit=" ms"),
    Target("latency-extended-1", "1 client, extended protocol: governed adds at most 0.12 ms"
           " per round trip (median) over direct", "select-extended-c1", "bastion-governed",
           "added_p50_ms", at_most=0.12, unit=" ms"),
    Target("latency-prepared-1", "1 client, prepared statements: governed adds at most 0.12 ms"
           " per round trip (median) over direct", "select-prepared-c1", "bastion-governed",
           "added_p50_ms", at_most=0.12, unit=" ms"),
    Target("wide-passthrough", "wide result: passthrough rows/s at least 0.9x pgbouncer",
           "wide-c8", "bastion-passthrough", "vs_pgbouncer", 0.9),
    Target("wide-masking", "wide result: masking rows/s at least 0.5x direct", "wide-c8",
           "bastion-masking", "vs_direct", 0.5),
    Target("masking-no-work", "select-only, 8 clients, prepared statements: masking on, with"
           " no column to mask, keeps at least 0.95x governed TPS", "select-prepared-c8",
           "bastion-masking", "vs_governed", 0.95),
    Target("idle-1000", "1,000 idle client connections: Bastion adds at most 200 MB resident"
           " memory", "idle", "bastion-passthrough", "added_rss_mb", at_most=200.0, unit=" MB"),
)  # fmt: skip


def evaluate(summary: dict[str, Any], idle: dict[str, Any] | None) -> list[dict[str, Any]]:
    verdicts = []
    for target in TARGETS:
        value = _target_value(target, summary, idle)
        verdict: dict[str, Any] = {
            "id": target.id,
            "goal": target.goal,
            "workload": target.workload,
            "target": target.target,
            "metric": target.metric,
            "limit": target.at_least if target.at_least is not None else target.at_most,
            "kind": "at_least" if target.at_least is not None else "at_most",
            "unit": target.unit.strip(),
            "value": value,
        }
        if value is None:
            verdict |= {"status": "not measured", "margin": "not measured in this run"}
        elif target.at_least is not None:
            passed = value >= target.at_least
            delta = (value / target.at_least - 1) * 100
            verdict |= {
                "status": "pass" if passed else "miss",
                "margin": f"{value:.2f}x, {abs(delta):.0f}% {'above' if passed else 'below'}"
                f" the {target.at_least:.2f}x floor",
            }
        else:
            assert target.at_most is not None
            passed = value <= target.at_most
            delta = value - target.at_most
            fmt = ".0f" if target.unit.strip() == "MB" else ".3f"
            verdict |= {
                "status": "pass" if passed else "miss",
                "margin": f"{value:{fmt}}{target.unit}, {abs(delta):{fmt}}{target.unit}"
                f" {'under' if passed else 'over'} the {target.at_most:{fmt}}{target.unit}"
                " ceiling",
            }
        verdicts.append(verdict)
    return verdicts


def _target_value(
    target: Target, summary: dict[str, Any], idle: dict[str, Any] | None
) -> float | None:
    if target.workload == "idle":
        if not idle:
            return None
        entry = idle.get("targets", {}).get(target.target)
        return round(entry["added_rss_kib"] / 1000, 1) if entry else None  # MB, as in the goal
    entry = summary.get(target.workload, {}).get("targets", {}).get(target.target)
    if entry is None:
        return None
    value = entry.get(target.metric)
    return float(value) if value is not None else None


def refresh(results: dict[str, Any]) -> dict[str, Any]:
    """Recompute the summary and the targets from the raw runs (after a change to this module)."""
    results["summary"] = summarize(results["runs"], results["workloads"])
    results["targets"] = evaluate(results["summary"], results.get("idle"))
    return results

"""Bastion's Prometheus metrics and the sink that feeds them from session events.

`MetricsSink` is one more audit sink: counting happens where events already flow, so the hot
path gains no extra call sites. Gauges that describe state rather than events (active
sessions, per target too, the audit writer's queue) are read when Prometheus scrapes; the
per-target one is a small collector, so a target without sessions disappears from the scrape
instead of lingering at its last value. Each Bastion process has its own registry, never the
global default, so tests and embedded uses do not collide.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from bastion.pipeline.events import ConnectionEvent, StatementEvent

__all__ = ["CONTENT_TYPE_LATEST", "BastionMetrics", "MetricsSink"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
# Bastion's own analysis and decision: tens of microseconds for a plain statement, milliseconds
# for a large one or a cold cache.
_ADDED_BUCKETS = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
)
# Outcomes of statements that reached the server, whose upstream time means something.
_RAN = frozenset({"ok", "error", "suspended"})


class BastionMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.sessions_total = Counter(
            "bastion_sessions",
            "Client connections by target and outcome.",
            ["target", "outcome"],
            registry=r,
        )
        self.sessions_active = Gauge(
            "bastion_sessions_active", "Client sessions open now.", registry=r
        )
        self.statements_total = Counter(
            "bastion_statements",
            "Statements by target, kind, decision and outcome.",
            ["target", "kind", "decision", "outcome"],
            registry=r,
        )
        self.denials_total = Counter(
            "bastion_denials",
            "Statements refused, by the rule that refused them.",
            ["rule"],
            registry=r,
        )
        self.statement_seconds = Histogram(
            "bastion_statement_duration_seconds",
            "Time from forwarding a statement to its completion, upstream time included.",
            ["target"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_seconds = Histogram(
            "bastion_upstream_duration_seconds",
            "Time from forwarding a statement to its completion (the server's time and the "
            "network), for statements that ran, errors included.",
            ["target"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.added_seconds = Histogram(
            "bastion_added_seconds",
            "Bastion's own time for a statement: analysis and decision before forwarding it.",
            ["target"],
            buckets=_ADDED_BUCKETS,
            registry=r,
        )
        self.sessions_by_target = _SessionsByTarget()
        r.register(self.sessions_by_target)
        self.masked_cells = Counter(
            "bastion_masked_cells",
            "Values masked in results before they left Bastion, by sensitive class.",
            ["class"],
            registry=r,
        )
        self.admin_actions = Counter(
            "bastion_admin_actions",
            "Actions through the admin API: login, logout, session_terminated.",
            ["action"],
            registry=r,
        )
        self.audit_queue_depth = Gauge(
            "bastion_audit_queue_depth", "Audit records accepted and not yet durable.", registry=r
        )
        self.audit_lag_seconds = Gauge(
            "bastion_audit_lag_seconds",
            "Age of the oldest audit record not yet durable.",
            registry=r,
        )
        self.audit_healthy = Gauge(
            "bastion_audit_store_healthy", "1 while the audit store accepts writes.", registry=r
        )
        self.approval_events = Counter(
            "bastion_approval_events",
            "Approval request events: requested, voted, approved, denied, expired, withdrawn, "
            "executed.",
            ["event"],
            registry=r,
        )
        self.approval_notifications = Counter(
            "bastion_approval_notifications",
            "Approval notifications by channel and outcome (delivered or failed).",
            ["channel", "outcome"],
            registry=r,
        )
        self.approvals_pending = Gauge(
            "bastion_approvals_pending",
            "Approval requests waiting for a decision in the shared store (all instances).",
            registry=r,
        )
        self.approvals_waiting = Gauge(
            "bastion_approvals_waiting",
            "Statements of this instance's sessions waiting for an approval decision now.",
            registry=r,
        )

    def bind_gauges(
        self,
        active_sessions: Callable[[], float],
        audit_queue_depth: Callable[[], float] | None = None,
        audit_lag_seconds: Callable[[], float] | None = None,
        audit_healthy: Callable[[], float] | None = None,
        approvals_waiting: Callable[[], float] | None = None,
        approvals_pending: Callable[[], float] | None = None,
        sessions_by_target: Callable[[], dict[str, int]] | None = None,
    ) -> None:
        """Read live state at scrape time."""
        self.sessions_active.set_function(active_sessions)
        if sessions_by_target is not None:
            self.sessions_by_target.source = sessions_by_target
        if approvals_waiting is not None:
            self.approvals_waiting.set_function(approvals_waiting)
        if approvals_pending is not None:
            self.approvals_pending.set_function(approvals_pending)
        if audit_queue_depth is not None:
            self.audit_queue_depth.set_function(audit_queue_depth)
        if audit_lag_seconds is not None:
            self.audit_lag_seconds.set_function(audit_lag_seconds)
        if audit_healthy is not None:
            self.audit_healthy.set_function(audit_healthy)

    def count_admin_action(self, action: str) -> None:
        """The count callback of the admin recorder."""
        self.admin_actions.labels(action).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _SessionsByTarget:
    """`bastion_sessions_active_by_target{target}`, read from `source` at each scrape."""

    NAME = "bastion_sessions_active_by_target"
    HELP = "Client sessions open now, by target."

    def __init__(self) -> None:
        self.source: Callable[[], dict[str, int]] | None = None

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.NAME, self.HELP, labels=["target"])
        counts = self.source() if self.source is not None else {}
        for target, count in sorted(counts.items()):
            family.add_metric([target], count)
        yield family

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(self.NAME, self.HELP, labels=["target"])


class MetricsSink:
    """An audit sink that counts: connections, statements, denials, durations."""

    records_statements = True

    def __init__(self, metrics: BastionMetrics) -> None:
        self._m = metrics
        # Resolving a labelled child is the costly part of counting; keep each one found.
        self._statement_children: dict[tuple[str, str, str, str], Counter] = {}
        self._timers: dict[str, _TargetTimers] = {}

    def connection(self, event: ConnectionEvent) -> None:
        if event.event == "disconnect":
            return
        outcome = "ok" if event.outcome == "ok" else "refused"
        self._m.sessions_total.labels(event.target or "-", outcome).inc()

    def statement(self, event: StatementEvent) -> None:
        m = self._m
        key = (event.target, event.kind, event.decision, event.outcome)
        child = self._statement_children.get(key)
        if child is None:
            child = self._statement_children[key] = m.statements_total.labels(*key)
        child.inc()
        timers = self._timers.get(event.target)
        if timers is None:
            timers = self._timers[event.target] = _TargetTimers(m, event.target)
        if event.decide_ms > 0.0:  # zero: not measured (a later Execute of the same portal)
            timers.added.observe(event.decide_ms / 1000.0)
        if event.masked_cells:
            for name, count in event.masked_cells.items():
                m.masked_cells.labels(name).inc(count)
        if event.decision != "allow":
            m.denials_total.labels(event.rule).inc()
        elif event.outcome in _RAN:
            seconds = event.duration_ms / 1000.0
            timers.upstream.observe(seconds)
            if event.outcome != "error":
                timers.statement.observe(seconds)


class _TargetTimers:
    """The histogram children of one target, resolved once."""

    __slots__ = ("added", "statement", "upstream")

    def __init__(self, metrics: BastionMetrics, target: str) -> None:
        self.statement = metrics.statement_seconds.labels(target)
        self.upstream = metrics.upstream_seconds.labels(target)
        self.added = metrics.added_seconds.labels(target)

"""Bastion's Prometheus metrics and the sink that feeds them from session events.

`MetricsSink` is one more audit sink: counting happens where events already flow, so the hot
path gains no extra call sites. Gauges that describe state rather than events (active
sessions, the audit writer's queue) are read when Prometheus scrapes. Each Bastion process has
its own registry, never the global default, so tests and embedded uses do not collide.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from bastion.pipeline.events import ConnectionEvent, StatementEvent

__all__ = ["CONTENT_TYPE_LATEST", "BastionMetrics", "MetricsSink"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


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
    ) -> None:
        """Read live state at scrape time."""
        self.sessions_active.set_function(active_sessions)
        if approvals_waiting is not None:
            self.approvals_waiting.set_function(approvals_waiting)
        if audit_queue_depth is not None:
            self.audit_queue_depth.set_function(audit_queue_depth)
        if audit_lag_seconds is not None:
            self.audit_lag_seconds.set_function(audit_lag_seconds)
        if audit_healthy is not None:
            self.audit_healthy.set_function(audit_healthy)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsSink:
    """An audit sink that counts: connections, statements, denials, durations."""

    records_statements = True

    def __init__(self, metrics: BastionMetrics) -> None:
        self._m = metrics
        # Resolving a labelled child is the costly part of counting; keep each one found.
        self._statement_children: dict[tuple[str, str, str, str], Counter] = {}

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
        if event.decision != "allow":
            m.denials_total.labels(event.rule).inc()
        elif event.outcome in ("ok", "suspended"):
            m.statement_seconds.labels(event.target).observe(event.duration_ms / 1000.0)

"""Bastion's metrics as Prometheus scrapes them: counters, histograms and gauges fed by events
and live state, parsed back from the exposition text."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bastion.admin.records import AdminRecorder
from bastion.observability.metrics import BastionMetrics, MetricsSink
from bastion.pipeline.events import ConnectionEvent, StatementEvent

SELECT = StatementEvent(
    session_id="s1",
    user="alice",
    target="shop",
    protocol="simple",
    kind="select",
    statement="SELECT $1",
    fingerprint="fp",
    decision="allow",
    rule="default",
    outcome="ok",
    duration_ms=3.0,
    decide_ms=0.04,
)


def scrape(metrics: BastionMetrics) -> dict[str, float]:
    """Every sample of the exposition, `name{label="value",...}` -> value, labels sorted."""
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


@pytest.fixture
def metrics() -> BastionMetrics:
    return BastionMetrics()


class TestStatements:
    def test_upstream_and_added_time_per_target(self, metrics: BastionMetrics) -> None:
        sink = MetricsSink(metrics)
        sink.statement(SELECT)
        sink.statement(replace(SELECT, duration_ms=700.0, decide_ms=2.0))
        sink.statement(replace(SELECT, target="crm", duration_ms=0.2, decide_ms=0.008))
        got = scrape(metrics)
        assert got['bastion_upstream_duration_seconds_count{target="shop"}'] == 2
        assert got['bastion_upstream_duration_seconds_sum{target="shop"}'] == pytest.approx(0.703)
        assert got['bastion_upstream_duration_seconds_bucket{le="0.005",target="shop"}'] == 1
        assert got['bastion_upstream_duration_seconds_bucket{le="1.0",target="shop"}'] == 2
        assert got['bastion_added_seconds_count{target="shop"}'] == 2
        assert got['bastion_added_seconds_sum{target="shop"}'] == pytest.approx(0.00204)
        assert got['bastion_added_seconds_bucket{le="1e-05",target="crm"}'] == 1
        assert got['bastion_added_seconds_bucket{le="5e-05",target="shop"}'] == 1
        assert got['bastion_added_seconds_bucket{le="0.0025",target="shop"}'] == 2
        assert got['bastion_upstream_duration_seconds_count{target="crm"}'] == 1
        # The older histogram keeps its name and meaning.
        assert got['bastion_statement_duration_seconds_count{target="shop"}'] == 2

    def test_added_buckets_span_ten_microseconds_to_ten_milliseconds(
        self, metrics: BastionMetrics
    ) -> None:
        MetricsSink(metrics).statement(SELECT)
        bounds = [
            float(name.split('le="')[1].split('"')[0])
            for name in scrape(metrics)
            if name.startswith("bastion_added_seconds_bucket")
        ]
        assert min(bounds) == 1e-05
        assert 0.01 in bounds
        assert len(bounds) >= 8

    def test_what_did_not_run_has_no_upstream_time(self, metrics: BastionMetrics) -> None:
        sink = MetricsSink(metrics)
        sink.statement(replace(SELECT, decision="deny", rule="no-ddl", outcome="denied"))
        sink.statement(replace(SELECT, outcome="skipped"))
        sink.statement(replace(SELECT, outcome="error", sqlstate="22012"))
        got = scrape(metrics)
        # A server error took server time; a refusal or a skipped statement took none.
        assert got['bastion_upstream_duration_seconds_count{target="shop"}'] == 1
        assert got['bastion_statement_duration_seconds_count{target="shop"}'] == 0
        # Bastion's own time was spent on every one of them.
        assert got['bastion_added_seconds_count{target="shop"}'] == 3
        assert got['bastion_denials_total{rule="no-ddl"}'] == 1
        assert (
            got[
                'bastion_statements_total{decision="deny",kind="select",outcome="denied",'
                'target="shop"}'
            ]
            == 1
        )

    def test_an_unmeasured_decision_is_not_counted_as_zero(self, metrics: BastionMetrics) -> None:
        MetricsSink(metrics).statement(replace(SELECT, decide_ms=0.0))
        got = scrape(metrics)
        assert got['bastion_added_seconds_count{target="shop"}'] == 0
        assert got['bastion_upstream_duration_seconds_count{target="shop"}'] == 1

    def test_histogram_children_are_resolved_once_per_target(
        self, metrics: BastionMetrics, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        sink = MetricsSink(metrics)
        sink.statement(SELECT)
        calls: list[tuple[str, ...]] = []
        for histogram in (metrics.upstream_seconds, metrics.added_seconds):
            original = histogram.labels

            def counting(*labels: str, _original: Callable[..., object] = original) -> object:
                calls.append(labels)
                return _original(*labels)

            monkeypatch.setattr(histogram, "labels", counting)
        for _ in range(100):
            sink.statement(SELECT)
        assert calls == []
        assert scrape(metrics)['bastion_upstream_duration_seconds_count{target="shop"}'] == 101


class TestGauges:
    def test_sessions_by_target_follow_the_source(self, metrics: BastionMetrics) -> None:
        live = {"shop": 2, "crm": 1}
        metrics.bind_gauges(active_sessions=lambda: 3, sessions_by_target=lambda: dict(live))
        got = scrape(metrics)
        assert got['bastion_sessions_active_by_target{target="shop"}'] == 2
        assert got['bastion_sessions_active_by_target{target="crm"}'] == 1
        assert got["bastion_sessions_active"] == 3
        del live["crm"]
        live["shop"] = 1
        got = scrape(metrics)
        assert got['bastion_sessions_active_by_target{target="shop"}'] == 1
        # A target whose last session ended is gone, not stuck at its last value.
        assert not any('target="crm"' in name for name in got if "by_target" in name)

    def test_unbound_the_family_is_declared_and_empty(self, metrics: BastionMetrics) -> None:
        families = {
            f.name: f for f in text_string_to_metric_families(metrics.exposition().decode())
        }
        family = families["bastion_sessions_active_by_target"]
        assert family.type == "gauge"
        assert family.samples == []


class TestCounters:
    def test_admin_actions_are_counted_through_the_recorder(self, metrics: BastionMetrics) -> None:
        recorder = AdminRecorder(None, count=metrics.count_admin_action)
        recorder("login", {"user": "bob", "outcome": "ok", "source_address": "127.0.0.1"})
        recorder("login", {"user": "bob", "outcome": "failed", "source_address": "127.0.0.1"})
        recorder("session_terminated", {"actor": "olga", "session_id": "s1"})
        got = scrape(metrics)
        assert got['bastion_admin_actions_total{action="login"}'] == 2
        assert got['bastion_admin_actions_total{action="session_terminated"}'] == 1

    def test_connections(self, metrics: BastionMetrics) -> None:
        sink = MetricsSink(metrics)
        connect = ConnectionEvent(
            event="connect",
            session_id="s1",
            source_ip="127.0.0.1",
            source_port=5000,
            user="alice",
            target="shop",
            outcome="ok",
        )
        sink.connection(connect)
        sink.connection(replace(connect, event="reject", outcome="28P01"))
        sink.connection(replace(connect, event="disconnect"))
        got = scrape(metrics)
        assert got['bastion_sessions_total{outcome="ok",target="shop"}'] == 1
        assert got['bastion_sessions_total{outcome="refused",target="shop"}'] == 1


def test_the_exposition_parses_and_every_family_is_bastions(metrics: BastionMetrics) -> None:
    MetricsSink(metrics).statement(SELECT)
    metrics.bind_gauges(active_sessions=lambda: 1, sessions_by_target=lambda: {"shop": 1})
    names = {f.name for f in text_string_to_metric_families(metrics.exposition().decode())}
    assert {
        "bastion_upstream_duration_seconds",
        "bastion_added_seconds",
        "bastion_sessions_active_by_target",
        "bastion_admin_actions",
        "bastion_statement_duration_seconds",
    } <= names
    assert all(name.startswith("bastion_") for name in names)

"""Throughput of the masking engine, printed (run with -s to see it); never asserted.

The row is the brief's reference shape: six columns, two masked by name (a person's name,
an e-mail address kept partially), two free-text columns scanned, two passed (an id and a
timestamp). The rows are the demo shop's 1,000 customers, one in eight with a secret in its
note. Timings depend on the machine; tests must not fail on them.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bastion.demo.sample import generate_sample
from bastion.masking import pgtypes
from bastion.masking.classes import SensitiveClass as C
from bastion.masking.classes import Strategy
from bastion.masking.classifier import Classification
from bastion.masking.plan import NATIVE_ROWS, MaskPlanBuilder, default_scanner
from bastion.wire.postgres.framing import frame

from .datarows import column, datarow

ROWS = 1_000


def best_of(repeat: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def test_row_masking_throughput() -> None:
    customers = generate_sample(ROWS).customers
    rows = [
        memoryview(
            datarow(
                [
                    str(c.id),
                    c.full_name,
                    c.email,
                    c.city,
                    c.notes,
                    "2024-03-01 10:20:30.123456+00",
                ]
            )
        )
        for c in customers
    ]
    columns = [column(pgtypes.INT4)] + [column(pgtypes.TEXT)] * 4 + [column(pgtypes.TIMESTAMPTZ)]
    decisions = [
        Classification.passing("id"),
        Classification.masked(C.PERSON_NAME, Strategy.REDACT, "name"),
        Classification.masked(C.EMAIL, Strategy.PARTIAL, "email"),
        Classification.scanned("city"),
        Classification.scanned("notes"),
        Classification.passing("timestamp"),
    ]
    plan = MaskPlanBuilder().build(columns, decisions)
    assert plan is not None
    assert len(plan.apply_batch(rows)) == ROWS
    run = memoryview(b"".join(frame(ord("D"), bytes(row)) for row in rows))
    assert plan.apply_run(run) == b"".join(frame(ord("D"), r) for r in plan.apply_batch(rows))

    per_row = best_of(5, lambda: [plan.apply(row) for row in rows]) / ROWS
    per_batch = best_of(5, lambda: plan.apply_batch(rows))
    per_run = best_of(5, lambda: plan.apply_run(run))
    copy_only = best_of(5, lambda: [bytes(row) for row in rows]) / ROWS
    print(
        f"\napply: {per_row * 1e6:.2f} us/row ({1 / per_row:,.0f} rows/s); "
        f"apply_batch: {per_batch * 1e3:.2f} ms per {ROWS} rows "
        f"({ROWS / per_batch:,.0f} rows/s); apply_run ({'C' if NATIVE_ROWS else 'Python'}): "
        f"{per_run * 1e3:.2f} ms ({ROWS / per_run:,.0f} rows/s); "
        f"copying a row alone: {copy_only * 1e6:.2f} us"
    )


def test_scan_throughput() -> None:
    scanner = default_scanner()
    sample = generate_sample(ROWS)
    customers = sample.customers
    clean = [
        f"{c.city}: order {c.id} for {c.full_name.split()[0]} {c.notes or ''}".encode()
        for c in customers
        if c.id not in sample.hidden_in_notes
    ] * 20
    dirty = [
        f"{c.full_name} <{c.email}> {c.phone} {c.card_number} {c.ssn} {c.notes or ''}".encode()
        for c in customers
    ]
    clean_bytes = sum(map(len, clean))
    dirty_bytes = sum(map(len, dirty))
    clean_time = best_of(3, lambda: scanner.scan(clean))
    dirty_time = best_of(3, lambda: scanner.scan(dirty))
    findings = len(scanner.scan(dirty))
    assert findings >= 5 * ROWS
    print(
        f"\nscan, text without findings: {clean_bytes / clean_time / 1e6:.0f} MB/s; "
        f"text full of findings: {dirty_bytes / dirty_time / 1e6:.1f} MB/s "
        f"({findings / dirty_time:,.0f} confirmed findings/s)"
    )

"""Micro-benchmarks of the per-statement stages, in-process, with time.perf_counter_ns loops.

Each case times a tight loop of one stage (analyze, decide, relay framing, the relay state
machine, masking rows, the audit sink) and reports the median and best nanoseconds per
operation over several repeats. The numbers explain the end-to-end benchmark: a stage that
costs 20 µs caps one core at 50,000 statements per second before any socket is touched.

Run it on its own with `python bench/micro.py` (add `--quick` for a short pass, `--json` for
machine-readable output); `bench/run.py` runs it too and puts its numbers in the report.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import logging
import os
import statistics
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script: import the harness as the `bench` package and shadow nothing.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bastion.audit.log_sink import JsonLogSink
from bastion.identity.directory import Identity
from bastion.identity.records import IdentityKind
from bastion.logs import JsonFormatter
from bastion.pipeline.context import ConnectionContext
from bastion.pipeline.events import ConnectionEvent, StatementEvent
from bastion.pipeline.stages import AllowAllDecider, PglastAnalyzer
from bastion.session.pg_relay import RelayMachine
from bastion.session.relay import FramedRelay
from bastion.sql.analyze import analyze
from bastion.wire.postgres import frontend
from bastion.wire.postgres.codes import (
    B_BIND_COMPLETE,
    B_COMMAND_COMPLETE,
    B_COPY_DATA,
    B_DATA_ROW,
    B_PARSE_COMPLETE,
    B_READY_FOR_QUERY,
    B_ROW_DESCRIPTION,
    F_BIND,
    F_EXECUTE,
    F_PARSE,
    F_QUERY,
    F_SYNC,
    MAX_PROTOCOL_MESSAGE,
)
from bastion.wire.postgres.framing import frame

SELECT_SQL = "SELECT abalance FROM pgbench_accounts WHERE aid = $1"
JOIN_SQL = (  # the alias number makes each text a new statement, not only new literals
    "SELECT c.email, o.total AS t{}, p.amount FROM customers c JOIN orders o"
    " ON o.customer_id = c.id JOIN payments p ON p.order_id = o.id WHERE c.id = 7"
    " AND o.status = 'paid'"
)
ROWS_PER_CHUNK = 100
Loop = Callable[[int], None]


# Wire messages, as a server sends them for `SELECT * FROM wide`.


def row_description() -> bytes:
    columns = [
        ("id", 23, 4),
        ("email", 25, -1),
        ("card_number", 25, -1),
        ("notes", 25, -1),
        ("comment", 25, -1),
        ("created_at", 1184, 8),
    ]
    body = struct.pack("!H", len(columns))
    for number, (name, type_oid, size) in enumerate(columns, start=1):
        body += (
            name.encode() + b"\x00" + struct.pack("!IhIhih", 16384, number, type_oid, size, -1, 0)
        )
    return frame(B_ROW_DESCRIPTION, body)


def encode_data_row(values: list[bytes]) -> bytes:
    body = struct.pack("!H", len(values))
    for value in values:
        body += struct.pack("!i", len(value)) + value
    return frame(B_DATA_ROW, body)


def data_row(i: int) -> bytes:
    return encode_data_row(
        [
            str(i).encode(),
            f"user{i:05d}.invoice@example.com".encode(),
            b"4539578763621486",
            b"customer asked about refund invoice address changed order shipped late",
            b"order shipped late customer asked",
            b"2025-03-04 05:06:00+00",
        ]
    )


def result_chunk(rows: int = ROWS_PER_CHUNK) -> bytes:
    return b"".join(
        [
            row_description(),
            *(data_row(i) for i in range(rows)),
            frame(B_COMMAND_COMPLETE, f"SELECT {rows}\x00".encode()),
            frame(B_READY_FOR_QUERY, b"I"),
        ]
    )


def _body(message: bytes) -> memoryview:
    return memoryview(message)[5:]


class NullAudit:
    """An audit sink that drops events, to time the relay machine on its own."""

    def connection(self, event: ConnectionEvent) -> None:
        pass

    def statement(self, event: StatementEvent) -> None:
        pass


def context() -> ConnectionContext:
    return ConnectionContext(
        session_id="0123456789ab",
        identity=Identity("bench", ("benchmark",), IdentityKind.SERVICE, "scram-sha-256"),
        source_ip="127.0.0.1",
        source_port=50000,
        tls_version=None,
        target="bench",
    )


def statement_event() -> StatementEvent:
    info = analyze("SELECT abalance FROM pgbench_accounts WHERE aid = 42")[0]
    return StatementEvent(
        session_id="0123456789ab",
        user="bench",
        target="bench",
        protocol="extended",
        kind=info.kind,
        statement=info.normalized,
        fingerprint=info.fingerprint,
        decision="allow",
        rule="default",
        outcome="ok",
        command_tag="SELECT 1",
        rows=1,
        duration_ms=0.123,
    )


# The cases. Each returns a loop that runs its operation n times.


def case_analyze_new() -> Loop:
    counter = itertools.count(10_000_000)

    def loop(n: int) -> None:
        for _ in range(n):
            analyze(f"SELECT abalance AS a{next(counter)} FROM pgbench_accounts WHERE aid = 1")

    return loop


def case_analyze_new_literals() -> Loop:
    counter = itertools.count(10_000_000)
    prefix = "SELECT abalance FROM pgbench_accounts WHERE aid = "

    def loop(n: int) -> None:
        for _ in range(n):
            analyze(prefix + str(next(counter)))

    return loop


def case_analyze_new_join() -> Loop:
    counter = itertools.count(10_000_000)

    def loop(n: int) -> None:
        for _ in range(n):
            analyze(JOIN_SQL.format(next(counter)))

    return loop


def case_analyze_cached() -> Loop:
    analyzer = PglastAnalyzer()
    analyzer.analyze(SELECT_SQL)

    def loop(n: int) -> None:
        for _ in range(n):
            analyzer.analyze(SELECT_SQL)

    return loop


def case_decide() -> Loop:
    decider = AllowAllDecider()
    ctx = context()
    infos = analyze(SELECT_SQL)

    def loop(n: int) -> None:
        for _ in range(n):
            decider.decide(ctx, infos)

    return loop


def case_decide_builtin_policy() -> Loop | None:
    """The decider `bastion serve` uses without a policy file, where this Bastion has one."""
    try:
        from bastion.policy import PolicyEngine, policy_from_mapping
    except ImportError:
        return None
    engine = PolicyEngine(policy_from_mapping({"version": 1, "default_effect": "allow"}, "bench"))
    ctx = context()
    engine.connect(ctx)
    infos = analyze(SELECT_SQL)

    def loop(n: int) -> None:
        decide = engine.decide
        for _ in range(n):
            decide(ctx, infos)

    return loop


def case_relay_feed() -> Loop:
    chunk = result_chunk()

    def inspect(type_byte: int, body: memoryview) -> bytes | None:
        return None

    relay = FramedRelay(
        lambda data: None, inspect, frozenset({B_DATA_ROW, B_COPY_DATA}), MAX_PROTOCOL_MESSAGE
    )

    def loop(n: int) -> None:
        feed = relay.feed
        for _ in range(n):
            feed(chunk)

    return loop


def _machine() -> RelayMachine:
    return RelayMachine(context(), PglastAnalyzer(), AllowAllDecider(), NullAudit())


def case_relay_feed_with_machine() -> Loop:
    """A whole simple-query result through the session's real server-side path."""
    machine = _machine()
    query = _body(frontend.encode_query("SELECT * FROM wide"))
    chunk = result_chunk()
    relay = FramedRelay(
        lambda data: None,
        lambda t, b: machine.from_server(t, b),
        frozenset({B_DATA_ROW, B_COPY_DATA}),
        MAX_PROTOCOL_MESSAGE,
    )

    def loop(n: int) -> None:
        from_client, feed = machine.from_client, relay.feed
        for _ in range(n):
            from_client(F_QUERY, query)
            feed(chunk)

    return loop


def case_machine_simple() -> Loop:
    machine = _machine()
    query = _body(frontend.encode_query("SELECT abalance FROM pgbench_accounts WHERE aid = 42;"))
    description = _body(row_description())
    complete = _body(frame(B_COMMAND_COMPLETE, b"SELECT 1\x00"))
    ready = _body(frame(B_READY_FOR_QUERY, b"I"))

    def loop(n: int) -> None:
        from_client, from_server = machine.from_client, machine.from_server
        for _ in range(n):
            from_client(F_QUERY, query)
            from_server(B_ROW_DESCRIPTION, description)
            from_server(B_COMMAND_COMPLETE, complete)
            from_server(B_READY_FOR_QUERY, ready)

    return loop


def case_machine_extended() -> Loop:
    """What pgbench -M extended sends: Parse (unnamed), Bind, Describe, Execute, Sync."""
    machine = _machine()
    parse = _body(frontend.encode_parse("", SELECT_SQL, (23,)))
    bind = _body(frontend.encode_bind("", "", (b"42",)))
    describe = _body(frontend.encode_describe("P", ""))
    execute = _body(frontend.encode_execute())
    sync = _body(frontend.encode_sync())
    empty = memoryview(b"")
    description = _body(row_description())
    complete = _body(frame(B_COMMAND_COMPLETE, b"SELECT 1\x00"))
    ready = _body(frame(B_READY_FOR_QUERY, b"I"))
    f_describe = frontend.encode_describe("P", "")[0]

    def loop(n: int) -> None:
        from_client, from_server = machine.from_client, machine.from_server
        for _ in range(n):
            from_client(F_PARSE, parse)
            from_client(F_BIND, bind)
            from_client(f_describe, describe)
            from_client(F_EXECUTE, execute)
            from_client(F_SYNC, sync)
            from_server(B_PARSE_COMPLETE, empty)
            from_server(B_BIND_COMPLETE, empty)
            from_server(B_ROW_DESCRIPTION, description)
            from_server(B_COMMAND_COMPLETE, complete)
            from_server(B_READY_FOR_QUERY, ready)

    return loop


def case_machine_prepared() -> Loop:
    """What pgbench -M prepared sends after the first Parse: Bind, Execute, Sync."""
    machine = _machine()
    empty = memoryview(b"")
    machine.from_client(F_PARSE, _body(frontend.encode_parse("P_0", SELECT_SQL, (23,))))
    machine.from_client(F_SYNC, _body(frontend.encode_sync()))
    machine.from_server(B_PARSE_COMPLETE, empty)
    machine.from_server(B_READY_FOR_QUERY, _body(frame(B_READY_FOR_QUERY, b"I")))
    bind = _body(frontend.encode_bind("", "P_0", (b"42",)))
    execute = _body(frontend.encode_execute())
    sync = _body(frontend.encode_sync())
    complete = _body(frame(B_COMMAND_COMPLETE, b"SELECT 1\x00"))
    ready = _body(frame(B_READY_FOR_QUERY, b"I"))

    def loop(n: int) -> None:
        from_client, from_server = machine.from_client, machine.from_server
        for _ in range(n):
            from_client(F_BIND, bind)
            from_client(F_EXECUTE, execute)
            from_client(F_SYNC, sync)
            from_server(B_BIND_COMPLETE, empty)
            from_server(B_COMMAND_COMPLETE, complete)
            from_server(B_READY_FOR_QUERY, ready)

    return loop


def _audit_loop(handler: logging.Handler | None, level: int) -> Loop:
    logger = logging.getLogger(f"bench.micro.audit.{id(handler)}.{level}")
    logger.handlers[:] = [handler] if handler is not None else [logging.NullHandler()]
    logger.setLevel(level)
    logger.propagate = False
    sink = JsonLogSink(logger)
    event = statement_event()

    def loop(n: int) -> None:
        statement = sink.statement
        for _ in range(n):
            statement(event)

    return loop


def case_audit_null_handler() -> Loop:
    return _audit_loop(None, logging.INFO)


def case_audit_json_devnull() -> Loop:
    """What the governed profile pays per statement: a formatted JSON line, written out."""
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - lives for the run
    handler.setFormatter(JsonFormatter())
    return _audit_loop(handler, logging.INFO)


def _mask_plan(native: bool) -> Any:
    """The plan masking the wide result as the masking profile does: email and card_number
    masked by their names (default strategies), notes and comment scanned."""
    from bastion.masking.classes import SensitiveClass, default_strategy
    from bastion.masking.classifier import Classification
    from bastion.masking.plan import MaskPlanBuilder
    from bastion.wire.postgres.backend import Column

    types = [23, 25, 25, 25, 25, 1184]
    EMAIL, CARD = SensitiveClass.EMAIL, SensitiveClass.CARD_NUMBER
    columns = [Column(f"c{i}", 16384, i + 1, oid, -1, -1, 0) for i, oid in enumerate(types)]
    decisions = [
        Classification.passing("id"),
        Classification.masked(EMAIL, default_strategy(EMAIL), "name"),
        Classification.masked(CARD, default_strategy(CARD), "name"),
        Classification.scanned("free text"),
        Classification.scanned("free text"),
        Classification.passing("timestamp"),
    ]
    try:
        plan = MaskPlanBuilder().build(columns, decisions, native=native)
    except TypeError:  # a revision without the C rewriter
        return None
    if not hasattr(plan, "apply_run") or (native and not getattr(plan, "native", False)):
        return None
    return plan


def _wide_run(rows: int = ROWS_PER_CHUNK) -> memoryview:
    """`rows` DataRows of the benchmark's wide table (one in five hides a secret)."""
    from bench.stack import wide_rows

    rows_of_values = ([str(value).encode() for value in row] for row in wide_rows(rows))
    return memoryview(b"".join(encode_data_row(values) for values in rows_of_values))


def _mask_loop(native: bool) -> Loop | None:
    plan = _mask_plan(native)
    if plan is None:
        return None
    run = _wide_run()

    def loop(n: int) -> None:
        apply = plan.apply_run
        for _ in range(n):
            apply(run)

    return loop


def case_mask_rows() -> Loop | None:
    return _mask_loop(native=True)


def case_mask_rows_python() -> Loop | None:
    return _mask_loop(native=False)


def case_audit_disabled() -> Loop:
    """What the passthrough profile pays: the sink checks the level and returns."""
    return _audit_loop(logging.StreamHandler(io.StringIO()), logging.WARNING)


CASES: list[tuple[str, str, Callable[[], Loop | None], int]] = [
    # name, description, factory, rows per operation (0 when not row-based)
    ("analyze_new_select", "analyze a new statement (unique text: cache miss), simple SELECT",
     case_analyze_new, 0),
    ("analyze_new_literals", "analyze a statement seen before with other literals (pgbench's"
     " simple protocol)", case_analyze_new_literals, 0),
    ("analyze_new_join", "analyze a new statement (unique text), 3-way join",
     case_analyze_new_join, 0),
    ("analyze_cached", "analyze a statement seen before (LRU hit)", case_analyze_cached, 0),
    ("decide_allow_all", "decide (AllowAllDecider)", case_decide, 0),
    ("decide_builtin_policy", "decide with the built-in policy (allow, guardrails on), a"
     " statement decided before", case_decide_builtin_policy, 0),
    ("relay_feed_100_rows", "FramedRelay.feed: RowDescription + 100 DataRows + CommandComplete"
     " + ReadyForQuery (no-op inspector)", case_relay_feed, ROWS_PER_CHUNK),
    ("relay_feed_100_rows_machine", "the same chunk through the session's inspector"
     " (RelayMachine), plus its Query", case_relay_feed_with_machine, ROWS_PER_CHUNK),
    ("machine_simple_cycle", "RelayMachine: Query -> RowDescription, CommandComplete,"
     " ReadyForQuery (null audit sink)", case_machine_simple, 0),
    ("machine_extended_cycle", "RelayMachine: Parse, Bind, Describe, Execute, Sync -> 5 replies"
     " (null audit sink)", case_machine_extended, 0),
    ("machine_prepared_cycle", "RelayMachine: Bind, Execute, Sync -> BindComplete,"
     " CommandComplete, ReadyForQuery (null audit sink)", case_machine_prepared, 0),
    ("mask_100_rows", "mask 100 rows of the wide result (2 columns masked by name, 2 scanned;"
     " one row in five hides a secret): RowMaskPlan.apply_run, C rewriter", case_mask_rows,
     ROWS_PER_CHUNK),
    ("mask_100_rows_python", "the same with the Python rewriter (what runs without the C"
     " extension)", case_mask_rows_python, ROWS_PER_CHUNK),
    ("audit_statement_null_handler", "JsonLogSink.statement, logging at info, NullHandler",
     case_audit_null_handler, 0),
    ("audit_statement_json_line", "JsonLogSink.statement, JSON formatter, written to /dev/null",
     case_audit_json_devnull, 0),
    ("audit_statement_disabled", "JsonLogSink.statement, logging at warning (passthrough)",
     case_audit_disabled, 0),
]  # fmt: skip


def measure(loop: Loop, *, target_s: float, repeat: int) -> tuple[float, float, int]:
    """Median and best ns per operation over `repeat` timed loops of about target_s each."""
    loop(3)  # warm caches and the interpreter's specializations
    number = 10
    while True:
        start = time.perf_counter_ns()
        loop(number)
        elapsed = time.perf_counter_ns() - start
        if elapsed >= target_s * 1e9 / 4 or number >= 10_000_000:
            break
        number *= 4
    number = max(1, int(number * target_s * 1e9 / max(elapsed, 1)))
    samples = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        loop(number)
        samples.append((time.perf_counter_ns() - start) / number)
    return statistics.median(samples), min(samples), number


def run_micro(*, quick: bool = False, verbose: bool = True) -> dict[str, Any]:
    target_s, repeat = (0.05, 3) if quick else (0.25, 7)
    results: dict[str, Any] = {}
    for name, description, factory, rows in CASES:
        loop = factory()
        if loop is None:
            continue  # the measured Bastion does not have this stage
        median_ns, best_ns, number = measure(loop, target_s=target_s, repeat=repeat)
        entry: dict[str, Any] = {
            "description": description,
            "median_ns": round(median_ns, 1),
            "best_ns": round(best_ns, 1),
            "ops_per_s": round(1e9 / median_ns, 1),
            "loops": number,
            "repeats": repeat,
        }
        if rows:
            entry["ns_per_row"] = round(median_ns / rows, 1)
            entry["rows_per_s"] = round(rows * 1e9 / median_ns, 1)
        results[name] = entry
        if verbose:
            per_row = f"  ({entry['ns_per_row']:.0f} ns/row)" if rows else ""
            print(f"  {name:32s} {median_ns / 1000:9.2f} µs{per_row}", file=sys.stderr)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter loops, fewer repeats")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    results = run_micro(quick=args.quick, verbose=not args.json)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

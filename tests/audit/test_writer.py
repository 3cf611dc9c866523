"""AuditWriter: ordering, batching, backpressure, group commit, outages and checkpoints.

`ControlledStore` wraps a real SQLite store so a test can hold appends at a gate, take the store
down, or make a commit succeed and then report failure (a connection lost after COMMIT).
"""

from __future__ import annotations

import resource
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path

import pytest

from bastion.audit.errors import AuditStoreError, AuditUnavailable
from bastion.audit.keys import AuditSigner
from bastion.audit.record import AuditEntry, AuditRecord, ChainHead
from bastion.audit.sink import AuditSinkAdapter
from bastion.audit.sqlite_store import SQLiteAuditStore
from bastion.audit.verify import verify_chain
from bastion.audit.writer import AuditWriter
from bastion.pipeline.events import ConnectionEvent, StatementEvent
from bastion.pipeline.stages import AuditSink

WAIT = 10.0


class ControlledStore:
    """A SQLite store whose appends can be held, failed, or failed after committing."""

    def __init__(self, path: Path) -> None:
        self.inner = SQLiteAuditStore(path)
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.down = False
        self.fail_after_commit = 0
        self.append_sizes: list[int] = []
        self.append_threads: set[str] = set()

    def _check(self) -> None:
        if self.down:
            raise AuditStoreError("audit store is down")

    def head(self) -> ChainHead:
        self._check()
        return self.inner.head()

    def append(self, records: Sequence[AuditRecord]) -> None:
        self.entered.set()
        self.gate.wait()
        self._check()
        self.inner.append(records)
        self.append_sizes.append(len(records))
        self.append_threads.add(threading.current_thread().name)
        if self.fail_after_commit:
            self.fail_after_commit -= 1
            raise AuditStoreError("connection lost after COMMIT")

    def last(self, kind: str | None = None) -> AuditRecord | None:
        self._check()
        return self.inner.last(kind)

    def get(self, seq: int) -> AuditRecord | None:
        self._check()
        return self.inner.get(seq)

    def iterate(
        self, from_seq: int | None = None, to_seq: int | None = None
    ) -> Iterator[AuditRecord]:
        return self.inner.iterate(from_seq, to_seq)

    def search(self, **filters: object) -> list[AuditRecord]:
        return self.inner.search(**filters)  # type: ignore[arg-type]

    def prune(self, before_seq: int) -> int:
        return self.inner.prune(before_seq)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ControlledStore]:
    store = ControlledStore(tmp_path / "audit.db")
    try:
        yield store
    finally:
        store.gate.set()
        store.close()


@pytest.fixture
def writers() -> Iterator[Callable[..., AuditWriter]]:
    """Build and start writers; every one is closed at the end of the test."""
    made: list[AuditWriter] = []

    def make(
        store: ControlledStore, signer: AuditSigner | None = None, **options: object
    ) -> AuditWriter:
        writer = AuditWriter(store, signer, retry_initial=0.01, retry_max=0.05, **options)  # type: ignore[arg-type]
        made.append(writer)
        return writer.start()

    yield make
    for writer in made:
        writer.close(timeout=1)


def wait_for(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.002)


def statement(index: int, user: str = "alice") -> StatementEvent:
    return StatementEvent(
        session_id=f"s-{user}",
        user=user,
        target="shop",
        protocol="simple",
        kind="select",
        statement=f"SELECT {index}",
        fingerprint="f",
        decision="allow",
        rule="r",
        outcome="ok",
        rows=index,
    )


def statements(store: ControlledStore) -> list[AuditRecord]:
    return store.inner.search(kind="statement")


def test_records_keep_each_threads_order_and_form_one_chain(
    store: ControlledStore, signer: AuditSigner, writers: Callable[..., AuditWriter]
) -> None:
    writer = writers(store, signer, batch_size=64, checkpoint_every=50)
    users = [f"user{n}" for n in range(4)]

    def submit_all(user: str) -> None:
        for index in range(300):
            assert writer.submit(statement(index, user))

    threads = [threading.Thread(target=submit_all, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert writer.close() == 0
    written = statements(store)
    assert len(written) == 1200 == writer.records_written
    for user in users:
        assert [r.payload["rows"] for r in written if r.payload["user"] == user] == list(range(300))
    report = verify_chain(store.inner, signer.public_key)
    assert report.ok, report.summary()
    assert report.after_last_checkpoint == 0  # close sealed the tail
    assert store.append_threads == {"bastion-audit-writer"}


def test_records_are_written_in_batches(
    store: ControlledStore, writers: Callable[..., AuditWriter]
) -> None:
    writer = writers(store, None, batch_size=100, batch_delay=5.0)
    for index in range(1000):
        assert writer.submit(statement(index))
    wait_for(lambda: writer.records_written == 1000)
    assert store.append_sizes == [100] * 10
    assert writer.batches == 10


def test_a_batch_is_written_after_the_delay_even_when_not_full(
    store: ControlledStore, writers: Callable[..., AuditWriter]
) -> None:
    writer = writers(store, None, batch_size=100, batch_delay=0.05)
    writer.submit(statement(1))
    writer.submit(statement(2))
    wait_for(lambda: writer.records_written == 2)
    assert store.append_sizes == [2]


def test_a_full_queue_refuses_and_space_is_announced(
    store: ControlledStore, writers: Callable[..., AuditWriter]
) -> None:
    space = threading.Event()
    space_threads: list[str] = []

    def on_space() -> None:
        space_threads.append(threading.current_thread().name)
        space.set()

    store.gate.clear()
    writer = writers(store, None, queue_size=10, batch_size=5, batch_delay=0, on_space=on_space)
    sink: AuditSink = AuditSinkAdapter(writer)
    assert writer.submit(statement(0))
    assert store.entered.wait(WAIT)  # the first batch is stuck in the store
    accepted = 1
    while writer.submit(statement(accepted)):
        accepted += 1
    assert accepted == 11  # one in flight, ten queued
    assert not writer.accepting
    assert writer.refused == 1 and writer.queue_depth == 11
    with pytest.raises(AuditUnavailable) as raised:
        sink.statement(statement(99))
    assert raised.value.sqlstate == "53400"
    assert "audit" in raised.value.message and raised.value.hint
    assert not space.is_set()
    store.gate.set()
    assert space.wait(WAIT)
    assert space_threads == ["bastion-audit-writer"]
    assert writer.accepting
    sink.connection(
        ConnectionEvent(
            event="connect",
            session_id="s",
            source_ip="127.0.0.1",
            source_port=1,
            user="alice",
            target="shop",
            outcome="ok",
        )
    )
    wait_for(lambda: writer.queue_depth == 0)
    assert writer.records_written == accepted + 1
    assert [r.payload["rows"] for r in statements(store)] == list(range(accepted))


def test_sync_mode_commits_many_sessions_in_one_transaction(
    store: ControlledStore, writers: Callable[..., AuditWriter]
) -> None:
    store.gate.clear()
    writer = writers(store, None, mode="sync")
    results: dict[int, tuple[bool, str]] = {}
    lock = threading.Lock()

    def callback(index: int) -> Callable[[bool], None]:
        def on_durable(durable: bool) -> None:
            with lock:
                assert index not in results, "on_durable called twice"
                results[index] = (durable, threading.current_thread().name)

        return on_durable

    assert writer.submit(statement(0), callback(0))
    assert store.entered.wait(WAIT)
    submitters = [
        threading.Thread(target=writer.submit, args=(statement(n, f"u{n}"), callback(n)))
        for n in range(1, 21)
    ]
    for thread in submitters:
        thread.start()
    for thread in submitters:
        thread.join()
    wait_for(lambda: writer.queue_depth == 21)
    assert results == {}  # nothing is durable yet, so nobody has been told it is
    store.gate.set()
    wait_for(lambda: len(results) == 21)
    assert store.append_sizes == [1, 20]  # the twenty waiting sessions shared one commit
    assert all(result == (True, "bastion-audit-writer") for result in results.values())


def test_sync_mode_needs_a_callback(
    store: ControlledStore, writers: Callable[..., AuditWriter]
) -> None:
    writer = writers(store, None, mode="sync")
    with pytest.raises(ValueError, match="on_durable"):
        writer.submit(statement(1))


def test_an_outage_makes_the_writer_unhealthy_until_the_store_recovers(
    store: ControlledStore, signer: AuditSigner, writers: Callable[..., AuditWriter]
) -> None:
    writer = writers(store, signer, batch_delay=0, queue_size=50, checkpoint_every=10)
    for index in range(5):
        writer.submit(statement(index))
    wait_for(lambda: writer.records_written == 5)
    store.down = True
    writer.submit(statement(5))
    wait_for(lambda: not writer.healthy)
    assert writer.last_error is not None and "audit store is down" in writer.last_error
    failures = writer.failures
    wait_for(lambda: writer.failures > failures)  # it keeps retrying
    # Buffered mode keeps queueing while there is room, then refuses.
    accepted = 6
    while writer.submit(statement(accepted)):
        accepted += 1
    assert accepted == 6 + 50
    assert writer.lag_seconds > 0
    store.down = False
    wait_for(lambda: writer.healthy and writer.queue_depth == 0)
    assert writer.last_error is None
    assert [r.payload["rows"] for r in statements(store)] == list(range(accepted))
    assert writer.lag_seconds == 0
    writer.close()
    assert verify_chain(store.inner, signer.public_key).ok


def test_sync_mode_fails_fast_while_the_store_is_down(
    store: ControlledStore, writers: Callable[..., AuditWriter]
) -> None:
    writer = writers(store, None, mode="sync")
    outcomes: list[bool] = []
    store.down = True
    assert writer.submit(statement(1), outcomes.append)
    wait_for(lambda: outcomes == [False])
    assert not writer.healthy
    # While unhealthy: refused at once, inside submit.
    immediate: list[bool] = []
    assert not writer.accepting
    assert not writer.submit(statement(2), immediate.append)
    assert immediate == [False]
    store.down = False
    wait_for(lambda: writer.healthy)
    # The record that failed was kept and written once the store came back.
    wait_for(lambda: writer.records_written == 1)
    assert [r.payload["rows"] for r in statements(store)] == [1]
    assert outcomes == [False]
    later: list[bool] = []
    assert writer.submit(statement(3), later.append)
    wait_for(lambda: later == [True])


def test_sync_records_queued_behind_a_failing_batch_are_told_at_once(
    store: ControlledStore, writers: Callable[..., AuditWriter]
) -> None:
    writer = writers(store, None, mode="sync", batch_size=1)
    store.gate.clear()  # the first batch is stuck in the store...
    first: list[bool] = []
    queued: list[bool] = []
    assert writer.submit(statement(1), first.append)
    store.entered.wait(WAIT)
    assert writer.submit(statement(2), queued.append)  # ...and this one queues behind it
    store.down = True
    store.gate.set()  # the stuck batch fails: both sessions hear it, neither waits on
    wait_for(lambda: first == [False] and queued == [False])
    store.down = False
    wait_for(lambda: writer.records_written == 2)  # both are still written once it is back
    assert [r.payload["rows"] for r in statements(store)] == [1, 2]
    assert first == [False] and queued == [False]


def test_a_writer_started_while_the_store_is_down_recovers_without_records(
    store: ControlledStore, writers: Callable[..., AuditWriter]
) -> None:
    store.down = True
    writer = writers(store, None, mode="sync")
    wait_for(lambda: not writer.healthy)
    store.down = False
    wait_for(lambda: writer.healthy)


def test_a_commit_reported_as_failed_is_not_written_twice(
    store: ControlledStore, signer: AuditSigner, writers: Callable[..., AuditWriter]
) -> None:
    store.fail_after_commit = 1
    writer = writers(store, signer, batch_delay=0)
    for index in range(3):
        writer.submit(statement(index))
    wait_for(lambda: writer.records_written == 3)
    assert writer.failures == 1
    assert writer.close() == 0
    assert [r.payload["rows"] for r in statements(store)] == [0, 1, 2]
    assert verify_chain(store.inner, signer.public_key).ok


def test_checkpoints_every_n_records_and_on_close(
    store: ControlledStore, signer: AuditSigner, writers: Callable[..., AuditWriter]
) -> None:
    announced: list[AuditRecord] = []
    writer = writers(store, signer, checkpoint_every=10, on_checkpoint=announced.append)
    for index in range(35):
        writer.submit(statement(index))
    writer.close()
    checkpoints = store.inner.search(kind="checkpoint")
    assert [c.seq for c in checkpoints] == [11, 22, 33, 39]
    assert [(c.payload["from_seq"], c.payload["to_seq"]) for c in checkpoints] == [
        (1, 10),
        (12, 21),
        (23, 32),
        (34, 38),
    ]
    assert announced == checkpoints
    assert writer.checkpoints_written == 4
    assert verify_chain(store.inner, signer.public_key).ok


def test_checkpoints_after_an_interval(
    store: ControlledStore, signer: AuditSigner, writers: Callable[..., AuditWriter]
) -> None:
    writer = writers(store, signer, checkpoint_every=1000, checkpoint_seconds=0.05)
    writer.submit(statement(1))
    wait_for(lambda: writer.checkpoints_written == 1)
    checkpoint = store.inner.last("checkpoint")
    assert checkpoint is not None and checkpoint.payload["to_seq"] == 1
    # Idle with nothing new: no empty checkpoints, and no busy waiting for the next one.
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    time.sleep(0.3)
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    assert cpu < 0.15
    assert writer.checkpoints_written == 1
    writer.submit(statement(2))
    wait_for(lambda: writer.checkpoints_written == 2)


def test_a_restarted_writer_continues_the_chain(
    store: ControlledStore, signer: AuditSigner, writers: Callable[..., AuditWriter]
) -> None:
    first = writers(store, signer, checkpoint_every=4)
    for index in range(6):
        first.submit(statement(index))
    first.close()
    second = writers(store, signer, checkpoint_every=4)
    second.submit(AuditEntry("policy_reload", {"user": "admin", "epoch": 2}))
    second.submit(statement(6))
    second.close()
    report = verify_chain(store.inner, signer.public_key)
    assert report.ok, report.summary()
    kinds = [record.kind for record in store.inner.iterate()]
    assert kinds.count("policy_reload") == 1
    assert store.inner.search(user="admin")[0].payload == {"user": "admin", "epoch": 2}


def test_close_gives_up_on_a_dead_store_and_counts_what_was_lost(
    store: ControlledStore, writers: Callable[..., AuditWriter]
) -> None:
    writer = writers(store, None, mode="sync")
    store.down = True
    outcomes: list[bool] = []
    writer.submit(statement(1), outcomes.append)
    wait_for(lambda: not writer.healthy)
    started = time.monotonic()
    assert writer.close(timeout=0.2) == 1
    assert time.monotonic() - started < 5
    assert outcomes == [False]
    assert not writer.submit(statement(2), outcomes.append)
    assert outcomes == [False, False]


def test_a_closed_writer_refuses_submissions(
    store: ControlledStore, writers: Callable[..., AuditWriter]
) -> None:
    writer = writers(store, None)
    writer.close()
    assert not writer.submit(statement(1))


def test_callbacks_that_raise_do_not_stop_the_writer(
    store: ControlledStore, writers: Callable[..., AuditWriter]
) -> None:
    writer = writers(store, None, mode="sync")

    def broken(durable: bool) -> None:
        raise RuntimeError("callback bug")

    writer.submit(statement(1), broken)
    done: list[bool] = []
    writer.submit(statement(2), done.append)
    wait_for(lambda: done == [True])


def test_writer_options_are_checked(store: ControlledStore) -> None:
    with pytest.raises(ValueError, match="unknown audit mode"):
        AuditWriter(store, None, mode="eventually")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 1"):
        AuditWriter(store, None, queue_size=0)


def test_record_times_are_submission_times(
    store: ControlledStore, writers: Callable[..., AuditWriter]
) -> None:
    store.gate.clear()
    writer = writers(store, None, batch_delay=0)
    before = datetime.now().astimezone()
    writer.submit(statement(1))
    time.sleep(0.3)  # written 0.3 s later, stamped when submitted
    store.gate.set()
    wait_for(lambda: writer.records_written == 1)
    record = statements(store)[0]
    assert abs((record.ts - before).total_seconds()) < 0.2


def test_a_payload_that_is_not_json_is_recorded_as_such_and_blocks_nothing(
    store: ControlledStore, signer: AuditSigner, writers: Callable[..., AuditWriter]
) -> None:
    writer = writers(store, signer, batch_delay=0)
    writer.submit(AuditEntry("admin", {"action": "reload", "targets": {"a", "b"}}))
    writer.submit(AuditEntry("admin", {"note": "bad \ud800 text"}))
    writer.submit(statement(1))
    writer.close()
    admin = store.inner.search(kind="admin")
    assert "could not be serialized" in admin[0].payload["audit_error"]
    assert admin[1].payload == {"note": "bad \ufffd text"}
    assert [r.payload["rows"] for r in statements(store)] == [1]
    assert verify_chain(store.inner, signer.public_key).ok

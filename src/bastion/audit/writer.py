"""AuditWriter: the bridge between the proxy's hot path and the audit store.

`submit` never does I/O: it puts the event on a bounded queue and returns. One background
thread drains the queue in batches (up to `batch_size` records, waiting at most `batch_delay`
seconds for a batch to fill), turns events into payloads, chains them (seq, prev_hash, hash),
adds signed checkpoints every `checkpoint_every` records or `checkpoint_seconds` seconds, and
appends each batch in one transaction. Records are chained in the order `submit` accepted them.

Two durability modes:
- buffered (default): `submit(event)` returns False when the queue is full; the caller holds the
  statement and retries when `on_space` fires (called from the writer thread once the queue
  drains below `low_water` after a refusal). Nothing is dropped silently.
- sync: `submit(event, on_durable)` calls `on_durable(True)` from the writer thread once the batch
  holding the record is committed; many sessions' records share one transaction (group commit).

When the store fails the writer keeps the batch, retries with exponential backoff, and reports
`healthy = False` and `last_error`. While unhealthy, sync-mode submits are refused at once and
buffered-mode submits queue until the queue is full. Callbacks run on the writer thread and must
not block; exceptions they raise are logged and ignored.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from bastion.audit.checkpoint import checkpoint_record
from bastion.audit.errors import ChainConflict
from bastion.audit.keys import AuditSigner
from bastion.audit.record import (
    KIND_ADMIN,
    KIND_CHECKPOINT,
    AuditEntry,
    AuditRecord,
    ChainHead,
    canonical_json,
    chain_record,
    event_payload,
    prepare_payload,
    ts_from_epoch,
)
from bastion.audit.store import AuditStore
from bastion.pipeline.events import ConnectionEvent, StatementEvent

log = logging.getLogger("bastion.audit.writer")

WriterMode = Literal["buffered", "sync"]
Submission = ConnectionEvent | StatementEvent | AuditEntry
DurableCallback = Callable[[bool], None]

DEFAULT_QUEUE_SIZE = 10_000
DEFAULT_BATCH_SIZE = 500
DEFAULT_BUFFERED_BATCH_DELAY = 0.01
DEFAULT_CHECKPOINT_EVERY = 1000
DEFAULT_CHECKPOINT_SECONDS = 60.0


@dataclass(slots=True)
class _Queued:
    """One accepted submission, waiting for the writer thread."""

    item: Submission
    wall_time: float
    queued_at: float  # monotonic, for lag
    on_durable: DurableCallback | None


@dataclass(slots=True)
class _Pending:
    """A submission taken from the queue: its payload is built once, chained on each attempt."""

    kind: str
    payload: Mapping[str, Any]
    payload_json: str
    wall_time: float
    queued_at: float
    on_durable: DurableCallback | None


class AuditWriter:
    """Writes submitted events to `store` from one background thread; see the module doc."""

    def __init__(
        self,
        store: AuditStore,
        signer: AuditSigner | None,
        *,
        mode: WriterMode = "buffered",
        queue_size: int = DEFAULT_QUEUE_SIZE,
        batch_size: int = DEFAULT_BATCH_SIZE,
        batch_delay: float | None = None,
        checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
        checkpoint_seconds: float = DEFAULT_CHECKPOINT_SECONDS,
        low_water: int | None = None,
        on_space: Callable[[], None] | None = None,
        on_checkpoint: Callable[[AuditRecord], None] | None = None,
        retry_initial: float = 0.05,
        retry_max: float = 5.0,
    ) -> None:
        if mode not in ("buffered", "sync"):
            raise ValueError(f"unknown audit mode {mode!r}")
        if queue_size < 1 or batch_size < 1 or checkpoint_every < 1:
            raise ValueError("queue_size, batch_size and checkpoint_every must be at least 1")
        self.store = store
        self.mode: WriterMode = mode
        self.queue_size = queue_size
        self.batch_size = batch_size
        if batch_delay is None:
            batch_delay = DEFAULT_BUFFERED_BATCH_DELAY if mode == "buffered" else 0.0
        self.batch_delay = batch_delay
        self.checkpoint_every = checkpoint_every
        self.checkpoint_seconds = checkpoint_seconds
        self.low_water = queue_size // 2 if low_water is None else low_water
        self.on_space = on_space
        self.on_checkpoint = on_checkpoint
        self._signer = signer
        self._retry_initial = retry_initial
        self._retry_max = retry_max

        # Metrics, read by anyone, written by the writer thread only.
        self.healthy = True
        self.last_error: str | None = None
        self.records_written = 0
        self.checkpoints_written = 0
        self.batches = 0
        self.failures = 0
        self.conflicts = 0
        self.refused = 0

        self._queue: collections.deque[_Queued] = collections.deque()
        self._queue_lock = threading.Lock()
        self._wake = threading.Event()
        self._full = threading.Event()
        self._stop = threading.Event()
        self._abandon = threading.Event()
        self._refused_since_space = False
        self._in_flight: list[_Pending] = []
        self._attempted: list[AuditRecord] | None = None
        self._head: ChainHead | None = None
        self._last_checkpoint_seq = 0
        self._last_checkpoint_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="bastion-audit-writer", daemon=True)

    # The hot path.

    def submit(self, item: Submission, on_durable: DurableCallback | None = None) -> bool:
        """Queue `item`; False means refused (queue full, or in sync mode an unhealthy store).

        In sync mode `on_durable` is required and called exactly once: with True after the
        record's batch is committed, with False if the commit failed (the record stays queued for
        retry) or at once, inside this call, when the record is refused.
        """
        if self.mode == "sync":
            if on_durable is None:
                raise ValueError("sync-mode audit submissions need an on_durable callback")
            if not self.healthy or self._stop.is_set():
                self.refused += 1
                on_durable(False)
                return False
        queued = _Queued(item, time.time(), time.monotonic(), on_durable)
        with self._queue_lock:
            if len(self._queue) >= self.queue_size or self._stop.is_set():
                self._refused_since_space = True
                self.refused += 1
                accepted = False
            else:
                self._queue.append(queued)
                accepted = True
                if len(self._queue) >= self.batch_size:
                    self._full.set()
        if not accepted:
            if on_durable is not None:
                on_durable(False)
            return False
        if not self._wake.is_set():
            self._wake.set()
        return True

    @property
    def accepting(self) -> bool:
        """Whether `submit` would accept a record now: check before running a statement whose
        record is only submitted after it completes, and hold the statement while False."""
        if self._stop.is_set() or (self.mode == "sync" and not self.healthy):
            return False
        return len(self._queue) < self.queue_size

    # Metrics.

    @property
    def queue_depth(self) -> int:
        """Records accepted and not yet durable (queued plus the batch being written)."""
        return len(self._queue) + len(self._in_flight)

    @property
    def lag_seconds(self) -> float:
        """How long the oldest record not yet durable has waited (0 when none waits)."""
        oldest: float | None = None
        in_flight = self._in_flight
        if in_flight:
            oldest = in_flight[0].queued_at
        else:
            try:
                oldest = self._queue[0].queued_at
            except IndexError:
                return 0.0
        return max(0.0, time.monotonic() - oldest)

    # Life cycle.

    def start(self) -> AuditWriter:
        """Read the chain head (a failure leaves the writer unhealthy and retrying), then run."""
        try:
            self._load_chain_state()
        except Exception as exc:
            self._failed(exc)
        self._thread.start()
        return self

    def close(self, timeout: float | None = 10.0) -> int:
        """Write what is queued (and a final checkpoint), then stop; returns records left unwritten.

        Submissions are refused from now on. If the store is still failing after `timeout`
        seconds, the writer gives up: sync callbacks still waiting get False, and the count of
        records that were never written is returned (and logged).
        """
        self._stop.set()
        self._wake.set()
        self._full.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._abandon.set()
                self._thread.join()
        left = self._in_flight + [self._pending(queued) for queued in self._drain_queue()]
        self._in_flight = []
        for pending in left:
            self._notify(pending, False)
        if left:
            log.error(
                "audit writer stopped with records unwritten",
                extra={"fields": {"unwritten": len(left), "error": self.last_error}},
            )
        return len(left)

    # The writer thread.

    def _run(self) -> None:
        backoff = self._retry_initial
        while not self._abandon.is_set():
            if not self._in_flight:
                taken = self._next_batch()
                if taken is None:
                    break
                self._in_flight = [self._pending(queued) for queued in taken]
                self._maybe_call_on_space()
            try:
                self._write_in_flight()
            except Exception as exc:
                self._head = None  # re-read the head and last checkpoint before the next try
                self._failed(exc)
                self._abandon.wait(backoff)
                backoff = min(backoff * 2, self._retry_max)
                continue
            backoff = self._retry_initial
            if not self.healthy:
                log.info("audit store recovered")
            self.healthy = True
            self.last_error = None

    def _next_batch(self) -> list[_Queued] | None:
        """Queued records to write; [] to write a checkpoint or probe a failed store; None: stop."""
        while True:
            if self._queue:
                if len(self._queue) < self.batch_size and self.batch_delay > 0:
                    remaining = self._queue[0].queued_at + self.batch_delay - time.monotonic()
                    if remaining > 0 and not self._stop.is_set():
                        self._full.wait(remaining)
                return self._drain_queue(self.batch_size)
            if self._head is None:
                # The store failed: probe it even with nothing queued, so that sync mode, which
                # queues nothing while unhealthy, finds out when it is back.
                return None if self._stop.is_set() else []
            if self._checkpoint_due(closing=self._stop.is_set()):
                return []
            if self._stop.is_set():
                return None
            self._wake.wait(self._idle_timeout())
            self._wake.clear()

    def _drain_queue(self, limit: int | None = None) -> list[_Queued]:
        with self._queue_lock:
            count = len(self._queue) if limit is None else min(limit, len(self._queue))
            taken = [self._queue.popleft() for _ in range(count)]
            # Under the lock, so `_full` always says whether a whole batch is waiting.
            if len(self._queue) >= self.batch_size or self._stop.is_set():
                self._full.set()
            else:
                self._full.clear()
            return taken

    def _pending(self, queued: _Queued) -> _Pending:
        item = queued.item
        if isinstance(item, AuditEntry):
            kind, raw = item.kind or KIND_ADMIN, dict(item.payload)
        else:
            kind, raw = event_payload(item)
        try:
            payload, payload_json = prepare_payload(raw)
        except (TypeError, ValueError) as exc:
            # One bad payload must neither block the records behind it nor vanish: it is
            # recorded as what it was and why it could not be written.
            log.error("audit payload is not JSON", extra={"fields": {"kind": kind}})
            payload = {"audit_error": f"payload could not be serialized: {exc}"}
            payload_json = canonical_json(payload)
        return _Pending(
            kind, payload, payload_json, queued.wall_time, queued.queued_at, queued.on_durable
        )

    def _write_in_flight(self) -> None:
        """Chain and append the in-flight batch (plus any checkpoint due); raise on failure."""
        while True:
            if self._head is None:
                self._load_chain_state()
            assert self._head is not None
            records = self._chain(self._head)
            if not records:
                return
            try:
                self.store.append(records)
            except ChainConflict as conflict:
                # Another writer appended first: chain after what it wrote and try again.
                self.conflicts += 1
                self._head = ChainHead(conflict.seq, conflict.hash)
                self._refresh_last_checkpoint()
                continue
            except Exception:
                self._attempted = records  # the commit may have happened after all
                raise
            self._committed(records)
            return

    def _load_chain_state(self) -> None:
        head = self.store.head()
        self._refresh_last_checkpoint()
        attempted, self._attempted = self._attempted, None
        if attempted and head.seq >= attempted[-1].seq:
            # A failed append may have committed before the connection broke: if the store holds
            # exactly what was attempted, it is written and must not be written twice.
            stored = self.store.get(attempted[-1].seq)
            if stored is not None and stored.hash == attempted[-1].hash:
                self._committed(attempted)
        self._head = head

    def _refresh_last_checkpoint(self) -> None:
        checkpoint = self.store.last(KIND_CHECKPOINT)
        self._last_checkpoint_seq = checkpoint.seq if checkpoint is not None else 0

    def _chain(self, head: ChainHead) -> list[AuditRecord]:
        records: list[AuditRecord] = []
        last_checkpoint = self._last_checkpoint_seq
        for pending in self._in_flight:
            record = chain_record(
                head,
                ts_from_epoch(pending.wall_time),
                pending.kind,
                pending.payload,
                pending.payload_json,
            )
            records.append(record)
            head = ChainHead(record.seq, record.hash)
            if self._signer is not None and head.seq - last_checkpoint >= self.checkpoint_every:
                checkpoint = self._checkpoint(head, last_checkpoint)
                records.append(checkpoint)
                head, last_checkpoint = ChainHead(checkpoint.seq, checkpoint.hash), checkpoint.seq
        if self._signer is not None and head.seq > last_checkpoint:
            # On shutdown the tail is always sealed; on time only if the batch has none yet.
            closing = self._stop.is_set()
            timely = last_checkpoint == self._last_checkpoint_seq and self._checkpoint_due(
                closing=False, head=head
            )
            if closing or timely:
                records.append(self._checkpoint(head, last_checkpoint))
        return records

    def _checkpoint(self, head: ChainHead, last_checkpoint: int) -> AuditRecord:
        assert self._signer is not None
        return checkpoint_record(head, last_checkpoint, self._signer, ts_from_epoch(time.time()))

    def _checkpoint_due(self, *, closing: bool, head: ChainHead | None = None) -> bool:
        """Time (or shutdown) calls for a checkpoint and records since the last one exist."""
        if self._signer is None:
            return False
        if head is None:
            head = self._head
        if head is None or head.seq <= self._last_checkpoint_seq:
            return False
        return closing or self._until_checkpoint_due() == 0.0

    def _idle_timeout(self) -> float | None:
        """How long an idle writer may sleep: until a checkpoint is due, or until woken."""
        head = self._head
        if self._signer is None or head is None or head.seq <= self._last_checkpoint_seq:
            return None
        return self._until_checkpoint_due()

    def _until_checkpoint_due(self) -> float:
        elapsed = time.monotonic() - self._last_checkpoint_at
        return max(0.0, self.checkpoint_seconds - elapsed)

    def _committed(self, records: list[AuditRecord]) -> None:
        last = records[-1]
        self._head = ChainHead(last.seq, last.hash)
        self.batches += 1
        for record in records:
            if record.kind == KIND_CHECKPOINT and record.seq > self._last_checkpoint_seq:
                self._last_checkpoint_seq = record.seq
                self._last_checkpoint_at = time.monotonic()
                self.checkpoints_written += 1
                if self.on_checkpoint is not None:
                    self._call(self.on_checkpoint, record)
        pending, self._in_flight = self._in_flight, []
        self.records_written += len(pending)
        for item in pending:
            self._notify(item, True)

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.healthy:
            log.error("audit store failed", extra={"fields": {"error": self.last_error}})
        self.healthy = False
        for pending in self._in_flight:
            # Told once; the record stays in flight and is written when the store recovers.
            self._notify(pending, False)
        if self.mode == "sync":
            # Queued records wait behind the failing batch: their statements must not wait
            # for a store that may stay down. They are told too, and stay queued.
            with self._queue_lock:
                waiting = [queued for queued in self._queue if queued.on_durable is not None]
            for queued in waiting:
                callback, queued.on_durable = queued.on_durable, None
                if callback is not None:
                    self._call(callback, False)

    def _notify(self, pending: _Pending, durable: bool) -> None:
        callback, pending.on_durable = pending.on_durable, None
        if callback is not None:
            self._call(callback, durable)

    def _maybe_call_on_space(self) -> None:
        if not self._refused_since_space or len(self._queue) > self.low_water:
            return
        self._refused_since_space = False
        if self.on_space is not None:
            self._call(self.on_space)

    @staticmethod
    def _call(callback: Callable[..., Any], *args: Any) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("audit writer callback failed")

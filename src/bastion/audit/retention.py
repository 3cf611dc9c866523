"""Retention: delete old audit records and leave a signed anchor so the rest still verifies.

Pruning keeps the newest records (`keep_records`) or those younger than `keep_days`. Before
deleting anything it appends an anchor: a checkpoint, signed like every checkpoint, that also
says "the kept chain starts at seq S, whose prev_hash is H". The verifier starts from there.
The anchor is appended through the store's normal chain check, so pruning while Bastion is
writing is safe; it is appended first and the deletion follows, so a failure in between leaves
extra records, never an unexplained hole.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from bastion.audit.checkpoint import checkpoint_record
from bastion.audit.errors import AuditStoreError, ChainConflict
from bastion.audit.keys import AuditSigner
from bastion.audit.record import KIND_CHECKPOINT, AuditRecord, ChainHead, ts_from_epoch
from bastion.audit.store import AuditStore

_MAX_CONFLICTS = 100


@dataclass(frozen=True, slots=True)
class PruneResult:
    pruned: int
    kept_from_seq: int | None
    anchor: AuditRecord | None


def prune(
    store: AuditStore,
    signer: AuditSigner,
    *,
    keep_days: float | None = None,
    keep_records: int | None = None,
    now: datetime | None = None,
) -> PruneResult:
    """Delete records older than `keep_days` days, or all but the newest `keep_records`."""
    if (keep_days is None) == (keep_records is None):
        raise ValueError("give exactly one of keep_days and keep_records")
    if keep_records is not None and keep_records < 1:
        raise ValueError("keep_records must be at least 1")
    if keep_days is not None and keep_days < 0:
        raise ValueError("keep_days must not be negative")
    now = now or ts_from_epoch(time.time())
    first = next(iter(store.iterate()), None)
    if first is None:
        return PruneResult(0, None, None)
    keep_from = _keep_from(store, keep_days, keep_records, now)
    if keep_from is not None and keep_from <= first.seq:
        return PruneResult(0, first.seq, None)
    anchor = _append_anchor(store, signer, keep_from, now)
    start = keep_from if keep_from is not None else anchor.seq
    return PruneResult(store.prune(start), start, anchor)


def _keep_from(
    store: AuditStore, keep_days: float | None, keep_records: int | None, now: datetime
) -> int | None:
    """The first seq to keep; None when every record now in the store is to go."""
    head = store.head()
    if keep_records is not None:
        return max(1, head.seq - keep_records + 1)
    assert keep_days is not None
    young = store.search(since=now - timedelta(days=keep_days), limit=1)
    return young[0].seq if young else None


def _append_anchor(
    store: AuditStore, signer: AuditSigner, keep_from: int | None, now: datetime
) -> AuditRecord:
    for _ in range(_MAX_CONFLICTS):
        head = store.head()
        previous = store.last(KIND_CHECKPOINT)
        if keep_from is None:
            # Nothing is kept but the anchor itself: the chain restarts at it.
            start = ChainHead(head.seq + 1, head.hash)
        else:
            kept = store.get(keep_from)
            if kept is None:
                raise AuditStoreError(f"record {keep_from} vanished while pruning")
            start = ChainHead(keep_from, kept.prev_hash)
        record = checkpoint_record(
            head, previous.seq if previous is not None else 0, signer, now, anchor=start
        )
        try:
            store.append([record])
        except ChainConflict:
            continue
        return record
    raise AuditStoreError("the audit chain kept moving while an anchor was being written")

"""The errors of the audit record: what callers see when it cannot accept or store records.

`AuditUnavailable` is the one a client may meet: the audit writer's bounded buffer is full
(usually because the store is down), so the statement is refused instead of running without a
record. `AuditStoreError` wraps driver failures of a store; `ChainConflict` tells a writer that
another writer moved the chain's head, so it must re-chain its batch and try again.
"""

from __future__ import annotations

from bastion.errors import BastionError


class AuditUnavailable(BastionError):
    """The audit record cannot accept another record right now; the statement is refused.

    SQLSTATE 53400 (configuration_limit_exceeded, class 53 "insufficient resources"): the
    configured audit buffer is full. Class 53 tells clients and their drivers that the
    condition is transient and the statement may be retried later; nothing ran.
    """

    sqlstate = "53400"


class AuditStoreError(BastionError):
    """An audit store could not be opened, read or written (the driver's error is chained)."""

    sqlstate = "58000"


class ChainConflict(Exception):
    """The store's chain head is not what the batch was chained to; re-chain and retry.

    Raised inside the append transaction, which is rolled back: nothing was written. `seq` and
    `hash` are the head the store holds, which the next attempt must chain from.
    """

    def __init__(self, seq: int, hash: str) -> None:
        super().__init__(f"the audit chain head is at seq {seq}, not where the batch starts")
        self.seq = seq
        self.hash = hash

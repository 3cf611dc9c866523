"""verify_chain: walk a whole store and prove it intact, or name the first record that is not.

For every record, in seq order: seq follows the previous one without a gap; the stored hash is
the hash of the stored content; prev_hash is the previous record's hash. For every checkpoint:
its payload is well formed, its signature is valid under a known public key, it covers exactly
the records since the previous checkpoint, and its to_hash is the hash of the record before it.

The walk starts at seq 1 from GENESIS_HASH, or, in a pruned store, at the seq named by a signed
anchor checkpoint, from the prev_hash the anchor vouches for. At the end the last record must be
the store's chain head. Checkpoints kept elsewhere (an export, a SIEM) can be passed as
`witnesses`: each must still be in the store, unchanged, unless it was pruned; this is how
removing the newest records together with the checkpoints that covered them is caught.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bastion.audit.checkpoint import Checkpoint, parse_checkpoint, signature_problem
from bastion.audit.keys import key_id
from bastion.audit.record import (
    GENESIS_HASH,
    KIND_CHECKPOINT,
    AuditRecord,
    ChainHead,
    canonical_json,
)
from bastion.audit.store import AuditStore


@dataclass(frozen=True, slots=True)
class VerifyProblem:
    """The first thing found wrong: at which seq (None for the store as a whole), and what."""

    seq: int | None
    message: str

    def __str__(self) -> str:
        return self.message if self.seq is None else f"seq {self.seq}: {self.message}"


@dataclass(slots=True)
class VerifyReport:
    """What `verify_chain` checked and found."""

    records: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    anchor: ChainHead | None = None
    checkpoints: int = 0
    last_checkpoint_seq: int | None = None
    last_checkpoint_covers: int | None = None
    after_last_checkpoint: int = 0
    witnesses_checked: int = 0
    problem: VerifyProblem | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None

    def summary(self) -> str:
        """A few lines for people: the verdict, the range, and what the checkpoints cover."""
        if self.problem is not None:
            return "\n".join([f"BROKEN: {self.problem}", *self.notes])
        lines = []
        if self.records == 0:
            lines.append("ok: the audit store is empty")
        else:
            lines.append(f"ok: {self.records} records, seq {self.first_seq} to {self.last_seq}")
        if self.anchor is not None:
            lines.append(
                f"records before seq {self.anchor.seq} were pruned; a signed anchor vouches "
                "for where the chain starts"
            )
        if self.last_checkpoint_seq is not None:
            lines.append(
                f"last checkpoint: seq {self.last_checkpoint_seq} (covers up to seq "
                f"{self.last_checkpoint_covers}); {self.after_last_checkpoint} records follow "
                "it, protected by hashes only"
            )
        elif self.records:
            lines.append(
                f"no checkpoint yet: all {self.after_last_checkpoint} records are protected "
                "by hashes only"
            )
        if self.witnesses_checked:
            lines.append(f"{self.witnesses_checked} exported checkpoints matched the store")
        lines.extend(self.notes)
        return "\n".join(lines)


PublicKeys = Ed25519PublicKey | Sequence[Ed25519PublicKey] | None


def verify_chain(
    store: AuditStore, public_keys: PublicKeys, witnesses: Iterable[AuditRecord] = ()
) -> VerifyReport:
    """Check the whole store; the report names the first problem, if any."""
    walk = _Walk(store, _key_map(public_keys), witnesses)
    walk.run()
    return walk.report


def _key_map(public_keys: PublicKeys) -> dict[str, Ed25519PublicKey]:
    if public_keys is None:
        return {}
    if isinstance(public_keys, Ed25519PublicKey):
        public_keys = [public_keys]
    return {key_id(key): key for key in public_keys}


class _Stop(Exception):
    """Ends the walk at the first problem."""


class _Walk:
    def __init__(
        self,
        store: AuditStore,
        keys: Mapping[str, Ed25519PublicKey],
        witnesses: Iterable[AuditRecord],
    ) -> None:
        self.store = store
        self.keys = keys
        self.report = VerifyReport()
        self.witnesses = {w.seq: w for w in witnesses if w.kind == KIND_CHECKPOINT}
        self.previous: AuditRecord | None = None
        self.previous_checkpoint: int | None = None  # seq of the last checkpoint walked
        self.start: ChainHead = ChainHead(1, GENESIS_HASH)
        self.head: ChainHead = ChainHead(0, GENESIS_HASH)

    def fail(self, seq: int | None, message: str) -> NoReturn:
        self.report.problem = VerifyProblem(seq, message)
        raise _Stop

    def run(self) -> None:
        # Walk up to the head as it is now: records Bastion appends meanwhile are not judged
        # (the head moves in the same transaction that adds them, so all below it are there).
        self.head = self.store.head()
        try:
            for record in self.store.iterate(to_seq=self.head.seq):
                if self.previous is None:
                    self.begin(record)
                self.check(record)
                self.previous = record
            self.finish()
        except _Stop:
            pass

    def begin(self, first: AuditRecord) -> None:
        self.report.first_seq = first.seq
        if first.seq == 1:
            return
        anchor = self.find_anchor(first)
        if anchor is None:
            self.fail(
                first.seq,
                f"the chain starts at seq {first.seq}, not 1, and no signed anchor accounts for "
                f"it: records 1 to {first.seq - 1} were deleted",
            )
        self.start = anchor
        self.report.anchor = anchor

    def find_anchor(self, first: AuditRecord) -> ChainHead | None:
        """The start a valid, signed anchor gives for a store whose first record is `first`."""
        for record in self.store.search(kind=KIND_CHECKPOINT, descending=True):
            if "anchor" not in record.payload or record.computed_hash() != record.hash:
                continue
            try:
                checkpoint = parse_checkpoint(record.payload)
            except ValueError:
                continue
            anchor = checkpoint.anchor
            if anchor is None or anchor.seq != first.seq:
                continue
            if signature_problem(record.payload, checkpoint, self.keys) is None:
                return anchor
        return None

    def check(self, record: AuditRecord) -> None:
        previous = self.previous
        expected = self.start if previous is None else ChainHead(previous.seq + 1, previous.hash)
        if record.seq != expected.seq:
            assert previous is not None
            self.fail(
                record.seq,
                f"gap between seq {previous.seq} and {record.seq}: "
                f"{record.seq - previous.seq - 1} records were deleted",
            )
        if record.computed_hash() != record.hash:
            self.fail(record.seq, "hash mismatch: the record was changed after it was written")
        if record.prev_hash != expected.hash:
            what = "the anchor" if previous is None else f"record {previous.seq}'s hash"
            self.fail(
                record.seq,
                f"prev_hash link broken: it is not {what}; records were reordered, replaced "
                "or rewritten",
            )
        if record.payload_json and canonical_json(record.payload) != record.payload_json:
            self.fail(record.seq, "the payload is not canonical JSON")
        self.report.records += 1
        self.report.last_seq = record.seq
        if record.kind == KIND_CHECKPOINT:
            self.check_checkpoint(record)
        witness = self.witnesses.pop(record.seq, None)
        if witness is not None:
            if witness.hash != record.hash:
                self.fail(record.seq, "differs from the exported checkpoint with the same seq")
            self.report.witnesses_checked += 1

    def check_checkpoint(self, record: AuditRecord) -> None:
        try:
            checkpoint = parse_checkpoint(record.payload)
        except ValueError as exc:
            self.fail(record.seq, f"malformed checkpoint: {exc}")
        problem = signature_problem(record.payload, checkpoint, self.keys)
        if problem is not None:
            self.fail(record.seq, f"forged or damaged checkpoint: {problem}")
        self.check_coverage(record, checkpoint)
        self.previous_checkpoint = record.seq
        self.report.checkpoints += 1
        self.report.last_checkpoint_seq = record.seq
        self.report.last_checkpoint_covers = checkpoint.to_seq

    def check_coverage(self, record: AuditRecord, checkpoint: Checkpoint) -> None:
        if checkpoint.to_seq != record.seq - 1 or checkpoint.to_hash != record.prev_hash:
            self.fail(record.seq, "checkpoint does not cover the record just before it")
        if checkpoint.count != checkpoint.to_seq - checkpoint.from_seq + 1:
            self.fail(record.seq, "checkpoint count does not match its seq range")
        if self.previous_checkpoint is not None:
            expected_from = self.previous_checkpoint + 1
            if checkpoint.from_seq != expected_from:
                self.fail(
                    record.seq,
                    f"checkpoint starts at seq {checkpoint.from_seq}, not {expected_from} "
                    "(the seq after the previous checkpoint)",
                )
        elif checkpoint.from_seq > self.start.seq:
            self.fail(
                record.seq,
                f"checkpoint starts at seq {checkpoint.from_seq}: records {self.start.seq} to "
                f"{checkpoint.from_seq - 1} are covered by no checkpoint",
            )
        if checkpoint.anchor is not None and checkpoint.anchor.seq > record.seq:
            self.fail(record.seq, "anchor points past the checkpoint itself")

    def finish(self) -> None:
        last = self.previous
        head = self.head
        newest = self.store.last()
        if newest is not None and newest.seq > self.store.head().seq:
            self.fail(newest.seq, "records exist beyond the store's chain head")
        if last is None:
            if head.seq != 0:
                self.fail(None, f"the store is empty but its chain head is at seq {head.seq}")
        elif head.seq != last.seq or head.hash != last.hash:
            if head.seq > last.seq:
                self.fail(
                    last.seq,
                    f"truncated: the store ends at seq {last.seq} but its chain head is at seq "
                    f"{head.seq}: the newest records were deleted",
                )
            self.fail(last.seq, "the store's chain head does not match its last record")
        end = last.seq if last is not None else 0
        for seq, witness in sorted(self.witnesses.items()):
            if seq > end:
                covers = _covers(witness.payload)
                self.fail(
                    seq,
                    f"truncated: the exported checkpoint at seq {seq} covers up to seq {covers} "
                    f"but the store ends at seq {end}",
                )
        self.report.after_last_checkpoint = end - (
            self.report.last_checkpoint_seq or (self.start.seq - 1)
        )


def _covers(payload: Mapping[str, Any]) -> Any:
    return payload.get("to_seq", "?")

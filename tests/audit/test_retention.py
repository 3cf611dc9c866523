"""Pruning: old records go, a signed anchor stays, and the rest still verifies."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bastion.audit.keys import AuditSigner
from bastion.audit.record import ChainHead
from bastion.audit.retention import prune
from bastion.audit.verify import verify_chain

from .conftest import BASE_TS, StoreCase, build_chain


def test_prune_keep_records_leaves_a_verifiable_anchored_chain(
    any_store: StoreCase, signer: AuditSigner
) -> None:
    records = build_chain(any_store.store, signer, 25, checkpoint_every=10)
    result = prune(any_store.store, signer, keep_records=10, now=BASE_TS + timedelta(days=1))
    assert result.kept_from_seq == 19
    assert result.pruned == 18
    assert result.anchor is not None and result.anchor.seq == 29
    assert result.anchor.payload["anchor"] == {"seq": 19, "prev_hash": records[17].hash}
    assert result.anchor.payload["from_seq"] == 29 and result.anchor.payload["count"] == 0
    report = verify_chain(any_store.store, signer.public_key)
    assert report.ok, report.summary()
    assert report.anchor == ChainHead(19, records[17].hash)
    assert (report.first_seq, report.last_seq, report.records) == (19, 29, 11)
    assert "pruned" in report.summary()


def test_prune_keep_days_keeps_younger_records(any_store: StoreCase, signer: AuditSigner) -> None:
    build_chain(any_store.store, signer, 30, checkpoint_every=10, start=BASE_TS)
    # Records are one minute apart; keep the last 10 minutes before `now`.
    now = BASE_TS + timedelta(minutes=30)
    result = prune(any_store.store, signer, keep_days=10 / 1440, now=now)
    first = next(iter(any_store.store.iterate()))
    assert first.ts >= now - timedelta(minutes=10)
    assert result.kept_from_seq == first.seq
    assert verify_chain(any_store.store, signer.public_key).ok


def test_pruning_everything_keeps_only_the_anchor(
    any_store: StoreCase, signer: AuditSigner
) -> None:
    build_chain(any_store.store, signer, 5)
    result = prune(any_store.store, signer, keep_days=1, now=BASE_TS + timedelta(days=30))
    assert result.anchor is not None
    remaining = list(any_store.store.iterate())
    assert [r.seq for r in remaining] == [result.anchor.seq]
    assert verify_chain(any_store.store, signer.public_key).ok
    # The chain goes on after the anchor and still verifies.
    build_chain(any_store.store, signer, 3)
    assert verify_chain(any_store.store, signer.public_key).ok


def test_pruning_twice_and_writing_on(any_store: StoreCase, signer: AuditSigner) -> None:
    build_chain(any_store.store, signer, 20, checkpoint_every=7)
    prune(any_store.store, signer, keep_records=5)
    build_chain(any_store.store, signer, 12, checkpoint_every=7)
    prune(any_store.store, signer, keep_records=8)
    build_chain(any_store.store, signer, 4, checkpoint_every=7, seal=False)
    report = verify_chain(any_store.store, signer.public_key)
    assert report.ok, report.summary()
    assert report.after_last_checkpoint == 4


def test_nothing_to_prune_writes_no_anchor(any_store: StoreCase, signer: AuditSigner) -> None:
    build_chain(any_store.store, signer, 5)
    result = prune(any_store.store, signer, keep_records=100)
    assert (result.pruned, result.anchor) == (0, None)
    assert any_store.store.head().seq == 6
    assert prune(any_store.store, signer, keep_days=1, now=BASE_TS).anchor is None


def test_deleting_below_the_anchor_is_caught(any_store: StoreCase, signer: AuditSigner) -> None:
    build_chain(any_store.store, signer, 25, checkpoint_every=10)
    prune(any_store.store, signer, keep_records=10)
    any_store.tamper.delete(19)
    problem = verify_chain(any_store.store, signer.public_key).problem
    assert problem is not None and problem.seq == 20
    assert "no signed anchor" in problem.message


def test_an_anchor_from_another_key_does_not_count(
    any_store: StoreCase, signer: AuditSigner
) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    build_chain(any_store.store, signer, 25, checkpoint_every=10)
    impostor = AuditSigner(Ed25519PrivateKey.generate())
    prune(any_store.store, impostor, keep_records=10)
    problem = verify_chain(any_store.store, signer.public_key).problem
    assert problem is not None and problem.seq == 19 and "no signed anchor" in problem.message


def test_prune_arguments_are_checked(any_store: StoreCase, signer: AuditSigner) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        prune(any_store.store, signer)
    with pytest.raises(ValueError, match="exactly one"):
        prune(any_store.store, signer, keep_days=1, keep_records=1)
    with pytest.raises(ValueError, match="at least 1"):
        prune(any_store.store, signer, keep_records=0)
    assert prune(any_store.store, signer, keep_records=1).anchor is None

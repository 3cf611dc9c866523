"""verify_chain against both stores: an intact chain passes, and every kind of tampering is named.

Each tamper test edits the store with plain SQL, as someone with database access would, and
checks that the report names the first bad record and what is wrong with it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bastion.audit.checkpoint import checkpoint_record, signed_message
from bastion.audit.keys import AuditSigner
from bastion.audit.record import AuditRecord, ChainHead, canonical_json
from bastion.audit.verify import verify_chain

from .conftest import BASE_TS, StoreCase, build_chain

# 25 statements with a checkpoint every 10: statements 1-10, checkpoint 11, 12-21, checkpoint
# 22, 23-27 (statements 21-25), checkpoint 28 sealing the tail.
COUNT = 25


def chain(case: StoreCase, signer: AuditSigner, **options: object) -> list[AuditRecord]:
    return build_chain(case.store, signer, COUNT, checkpoint_every=10, **options)  # type: ignore[arg-type]


def test_an_intact_chain_verifies(any_store: StoreCase, signer: AuditSigner) -> None:
    records = chain(any_store, signer)
    report = verify_chain(any_store.store, signer.public_key)
    assert report.ok, report.summary()
    assert (report.records, report.first_seq, report.last_seq) == (28, 1, 28)
    assert report.checkpoints == 3
    assert (report.last_checkpoint_seq, report.last_checkpoint_covers) == (28, 27)
    assert report.after_last_checkpoint == 0
    assert report.anchor is None
    assert records[-1].seq == 28
    assert "ok: 28 records, seq 1 to 28" in report.summary()


def test_verify_reports_what_follows_the_last_checkpoint(
    any_store: StoreCase, signer: AuditSigner
) -> None:
    chain(any_store, signer, seal=False)
    report = verify_chain(any_store.store, signer.public_key)
    assert report.ok
    assert (report.last_checkpoint_seq, report.last_checkpoint_covers) == (22, 21)
    assert report.after_last_checkpoint == 5
    assert "5 records follow it" in report.summary()


def test_an_empty_store_verifies(any_store: StoreCase, signer: AuditSigner) -> None:
    report = verify_chain(any_store.store, signer.public_key)
    assert report.ok and report.records == 0


def test_an_edited_payload_is_a_hash_mismatch(any_store: StoreCase, signer: AuditSigner) -> None:
    records = chain(any_store, signer)
    edited = dict(records[6].payload, user="mallory")
    any_store.tamper.set_payload(7, canonical_json(edited))
    report = verify_chain(any_store.store, signer.public_key)
    assert not report.ok
    assert report.problem is not None and report.problem.seq == 7
    assert "hash mismatch" in report.problem.message
    assert report.summary().startswith("BROKEN: seq 7: hash mismatch")


def test_a_payload_changed_without_changing_its_meaning_is_still_caught(
    any_store: StoreCase, signer: AuditSigner
) -> None:
    records = chain(any_store, signer)
    spaced = records[2].canonical_payload.replace(",", ", ", 1)
    assert json.loads(spaced) == records[2].payload
    any_store.tamper.set_payload(3, spaced)
    problem = verify_chain(any_store.store, signer.public_key).problem
    assert problem is not None and problem.seq == 3 and "hash mismatch" in problem.message


def test_a_deleted_record_is_a_gap(any_store: StoreCase, signer: AuditSigner) -> None:
    chain(any_store, signer)
    any_store.tamper.delete(14)
    problem = verify_chain(any_store.store, signer.public_key).problem
    assert problem is not None and problem.seq == 15
    assert "gap between seq 13 and 15" in problem.message


def test_swapped_payloads_are_a_hash_mismatch(any_store: StoreCase, signer: AuditSigner) -> None:
    records = chain(any_store, signer)
    any_store.tamper.set_payload(4, records[4].canonical_payload)
    any_store.tamper.set_payload(5, records[3].canonical_payload)
    problem = verify_chain(any_store.store, signer.public_key).problem
    assert problem is not None and problem.seq == 4 and "hash mismatch" in problem.message


def test_reordered_records_break_the_prev_hash_link(
    any_store: StoreCase, signer: AuditSigner
) -> None:
    # A careful attacker swaps records 4 and 5 and gives each a hash that is right for its new
    # place and the link it claims; the next record's link then gives it away.
    records = chain(any_store, signer)
    fourth, fifth = records[3], records[4]
    new_fourth = any_store.tamper.rehash(fifth, records[2].hash, seq=4)
    any_store.tamper.rehash(fourth, new_fourth, seq=5)
    problem = verify_chain(any_store.store, signer.public_key).problem
    assert problem is not None and problem.seq == 6
    assert "prev_hash link broken" in problem.message


def test_a_truncated_tail_is_caught_by_the_chain_head(
    any_store: StoreCase, signer: AuditSigner
) -> None:
    chain(any_store, signer)
    any_store.tamper.run("DELETE FROM {records} WHERE seq > ?", 20)
    problem = verify_chain(any_store.store, signer.public_key).problem
    assert problem is not None and problem.seq == 20
    assert "truncated: the store ends at seq 20 but its chain head is at seq 28" in problem.message


def test_a_truncated_tail_is_caught_by_an_exported_checkpoint(
    any_store: StoreCase, signer: AuditSigner
) -> None:
    records = chain(any_store, signer)
    exported = [r for r in records if r.kind == "checkpoint"]
    # The attacker deletes the tail and the head row's evidence of it.
    any_store.tamper.run("DELETE FROM {records} WHERE seq > ?", 20)
    any_store.tamper.run("UPDATE {head} SET seq = ?, hash = ?", 20, records[19].hash)
    without_witness = verify_chain(any_store.store, signer.public_key)
    assert without_witness.ok  # the store alone cannot tell: this is what witnesses are for
    assert without_witness.last_checkpoint_covers == 10
    report = verify_chain(any_store.store, signer.public_key, witnesses=exported)
    assert report.problem is not None and report.problem.seq == 22
    assert (
        "truncated: the exported checkpoint at seq 22 covers up to seq 21 but the store ends "
        "at seq 20" in report.problem.message
    )


def test_exported_checkpoints_that_match_are_counted(
    any_store: StoreCase, signer: AuditSigner
) -> None:
    records = chain(any_store, signer)
    exported = [r for r in records if r.kind == "checkpoint"]
    report = verify_chain(any_store.store, signer.public_key, witnesses=exported)
    assert report.ok and report.witnesses_checked == 3


def test_a_rewritten_history_is_caught_by_the_checkpoint_signature(
    any_store: StoreCase, signer: AuditSigner
) -> None:
    # The attacker edits record 3, recomputes every hash after it, and fixes up the checkpoint's
    # to_hash: only the signature, which needs the private key, gives it away.
    records = chain(any_store, signer)
    prev = records[1].hash
    for record in records[2:10]:
        if record.seq == 3:
            record = AuditRecord(
                3,
                record.ts,
                record.kind,
                dict(record.payload, user="mallory"),
                record.prev_hash,
                record.hash,
            )
        prev = any_store.tamper.rehash(record, prev)
    checkpoint = records[10]
    forged = AuditRecord(
        checkpoint.seq,
        checkpoint.ts,
        checkpoint.kind,
        dict(checkpoint.payload, to_hash=prev),
        prev,
        checkpoint.hash,
    )
    any_store.tamper.rehash(forged, prev)
    problem = verify_chain(any_store.store, signer.public_key).problem
    assert problem is not None and problem.seq == 11
    assert "forged or damaged checkpoint: bad signature" in problem.message


def test_a_checkpoint_signed_by_another_key_is_refused(
    any_store: StoreCase, signer: AuditSigner
) -> None:
    build_chain(any_store.store, signer, 5, seal=False)
    impostor = AuditSigner(Ed25519PrivateKey.generate())
    head = any_store.store.head()
    forged = checkpoint_record(ChainHead(head.seq, head.hash), 0, impostor, head_ts(any_store))
    any_store.store.append([forged])
    problem = verify_chain(any_store.store, signer.public_key).problem
    assert problem is not None and problem.seq == 6
    assert f"signed by key {impostor.key_id}" in problem.message
    # With both keys (two instances sharing one store), it verifies.
    assert verify_chain(any_store.store, [signer.public_key, impostor.public_key]).ok


def test_a_corrupted_signature_is_refused(any_store: StoreCase, signer: AuditSigner) -> None:
    records = chain(any_store, signer)
    checkpoint = records[21]
    signature = bytearray(base64.b64decode(checkpoint.payload["signature"]))
    signature[0] ^= 1
    payload = dict(checkpoint.payload, signature=base64.b64encode(signature).decode())
    forged = AuditRecord(
        checkpoint.seq, checkpoint.ts, checkpoint.kind, payload, checkpoint.prev_hash, ""
    )
    any_store.tamper.rehash(forged, checkpoint.prev_hash)
    # Later records still link to the old hash, but the checkpoint is reported first.
    problem = verify_chain(any_store.store, signer.public_key).problem
    assert problem is not None and problem.seq == 22 and "bad signature" in problem.message


def test_checkpoint_coverage_is_checked(any_store: StoreCase, signer: AuditSigner) -> None:
    # A validly signed checkpoint that skips records: from_seq must follow the previous one.
    build_chain(any_store.store, signer, 10, checkpoint_every=10)
    head = any_store.store.head()
    build_chain(any_store.store, None, 3)
    head = any_store.store.head()
    skipping = checkpoint_record(head, 12, signer, head_ts(any_store))
    any_store.store.append([skipping])
    problem = verify_chain(any_store.store, signer.public_key).problem
    assert problem is not None and problem.seq == 15
    assert "starts at seq 13, not 12" in problem.message


def test_a_malformed_checkpoint_is_named(any_store: StoreCase, signer: AuditSigner) -> None:
    records = chain(any_store, signer)
    checkpoint = records[10]
    payload = {k: v for k, v in checkpoint.payload.items() if k != "to_hash"}
    forged = AuditRecord(11, checkpoint.ts, "checkpoint", payload, checkpoint.prev_hash, "")
    any_store.tamper.rehash(forged, checkpoint.prev_hash)
    problem = verify_chain(any_store.store, signer.public_key).problem
    assert problem is not None and problem.seq == 11
    assert "malformed checkpoint" in problem.message and "to_hash" in problem.message


def test_deleting_the_oldest_records_is_caught(any_store: StoreCase, signer: AuditSigner) -> None:
    chain(any_store, signer)
    any_store.tamper.run("DELETE FROM {records} WHERE seq < ?", 4)
    problem = verify_chain(any_store.store, signer.public_key).problem
    assert problem is not None and problem.seq == 4
    assert "records 1 to 3 were deleted" in problem.message


def test_signed_message_excludes_only_the_signature(signer: AuditSigner) -> None:
    record = checkpoint_record(ChainHead(3, "ab" * 32), 0, signer, head_ts(None))
    message = signed_message(record.payload)
    assert b'"signature"' not in message
    assert b'"to_hash":"' + b"ab" * 32 in message
    assert message.startswith(b"bastion-audit-checkpoint-v1\n")


def head_ts(case: StoreCase | None) -> datetime:
    """The newest record's time (or the chain's base time), for hand-made checkpoints."""
    last = case.store.last() if case is not None else None
    return last.ts if last is not None else BASE_TS


def test_records_beyond_the_chain_head_are_named(any_store: StoreCase, signer: AuditSigner) -> None:
    records = chain(any_store, signer)
    any_store.tamper.run("UPDATE {head} SET seq = ?, hash = ?", 20, records[19].hash)
    problem = verify_chain(any_store.store, signer.public_key).problem
    assert problem is not None and problem.seq == 28
    assert "beyond the store's chain head" in problem.message


def test_verify_while_records_are_being_appended(any_store: StoreCase, signer: AuditSigner) -> None:
    chain(any_store, signer)
    store = any_store.store
    appended: list[int] = []

    class Appending:
        """The store as verify sees it, with Bastion appending after every page it reads."""

        def __getattr__(self, name: str) -> object:
            return getattr(store, name)

        def iterate(
            self, from_seq: int | None = None, to_seq: int | None = None
        ) -> Iterator[AuditRecord]:
            for record in store.iterate(from_seq, to_seq):
                if not appended:
                    appended.extend(r.seq for r in build_chain(store, signer, 3))
                yield record

    report = verify_chain(Appending(), signer.public_key)  # type: ignore[arg-type]
    assert appended and report.ok, report.summary()
    assert report.last_seq == 28
    assert verify_chain(store, signer.public_key).last_seq == appended[-1]

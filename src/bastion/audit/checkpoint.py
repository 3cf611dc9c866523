"""Signed checkpoints: records that vouch, with an Ed25519 signature, for the chain so far.

A checkpoint is an ordinary record of kind "checkpoint", chained like any other. Its payload:

    from_seq, to_seq  the records it covers: everything after the previous checkpoint, up to and
                      including the record just before it (to_seq = its own seq - 1)
    to_hash           the hash of record to_seq, which commits to the whole chain before it
    count             to_seq - from_seq + 1
    ts                when it was signed (UTC)
    key_id            which key signed it (see `keys.key_id`)
    anchor            only on anchors written by pruning: {"seq": S, "prev_hash": H} says the
                      kept chain starts at record S, whose prev_hash is H
    signature         base64 Ed25519 signature of CHECKPOINT_DOMAIN + canonical(the other fields)

Hashes alone prove only that records fit together: someone able to write to the store can
rewrite a record and recompute every hash after it. A signature over to_hash cannot be recomputed
without the private key, so everything up to a checkpoint is fixed. Records after the last
checkpoint are protected by hashes only, and removing them leaves no trace in the store itself:
the checkpoint interval bounds what can silently go missing (see docs/audit.md).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bastion.audit.keys import AuditSigner, verify_signature
from bastion.audit.record import (
    KIND_CHECKPOINT,
    AuditRecord,
    ChainHead,
    canonical_json,
    chain_record,
    format_ts,
)

CHECKPOINT_DOMAIN = b"bastion-audit-checkpoint-v1\n"
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A checkpoint payload, parsed and shape-checked (the signature is checked separately)."""

    from_seq: int
    to_seq: int
    to_hash: str
    count: int
    ts: str
    key_id: str
    signature: bytes
    anchor: ChainHead | None


def checkpoint_record(
    head: ChainHead,
    previous_checkpoint_seq: int,
    signer: AuditSigner,
    ts: datetime,
    anchor: ChainHead | None = None,
) -> AuditRecord:
    """The checkpoint record that follows `head`, covering everything after the previous one."""
    from_seq = previous_checkpoint_seq + 1
    claim: dict[str, Any] = {
        "from_seq": from_seq,
        "to_seq": head.seq,
        "to_hash": head.hash,
        "count": head.seq - from_seq + 1,
        "ts": format_ts(ts),
        "key_id": signer.key_id,
    }
    if anchor is not None:
        claim["anchor"] = {"seq": anchor.seq, "prev_hash": anchor.hash}
    signature = signer.sign(signed_message(claim))
    payload = {**claim, "signature": base64.b64encode(signature).decode("ascii")}
    return chain_record(head, ts, KIND_CHECKPOINT, payload)


def signed_message(payload: Mapping[str, Any]) -> bytes:
    """What the signature covers: the domain tag and the canonical payload without it."""
    claim = {name: value for name, value in payload.items() if name != "signature"}
    return CHECKPOINT_DOMAIN + canonical_json(claim).encode("utf-8")


def parse_checkpoint(payload: Mapping[str, Any]) -> Checkpoint:
    """The checkpoint in `payload`; ValueError says which field is missing or malformed."""

    def integer(name: str, minimum: int) -> int:
        value = payload.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"checkpoint field {name!r} is missing or not an integer >= {minimum}")
        return value

    def text(name: str) -> str:
        value = payload.get(name)
        if not isinstance(value, str) or not value:
            raise ValueError(f"checkpoint field {name!r} is missing or not a string")
        return value

    def digest(value: Any, name: str) -> str:
        if not isinstance(value, str) or len(value) != 64 or not _HEX.issuperset(value):
            raise ValueError(f"checkpoint field {name!r} is not a SHA-256 hex digest")
        return value

    from_seq = integer("from_seq", 1)
    to_seq = integer("to_seq", 0)
    count = integer("count", 0)
    try:
        signature = base64.b64decode(text("signature"), validate=True)
    except binascii.Error as exc:
        raise ValueError("checkpoint field 'signature' is not base64") from exc
    anchor: ChainHead | None = None
    if "anchor" in payload:
        raw = payload["anchor"]
        seq = raw.get("seq") if isinstance(raw, Mapping) else None
        if not isinstance(raw, Mapping) or not isinstance(seq, int) or isinstance(seq, bool):
            raise ValueError("checkpoint field 'anchor' needs an integer 'seq'")
        if seq < 1:
            raise ValueError("checkpoint field 'anchor' needs 'seq' >= 1")
        anchor = ChainHead(seq, digest(raw.get("prev_hash"), "anchor.prev_hash"))
    return Checkpoint(
        from_seq=from_seq,
        to_seq=to_seq,
        to_hash=digest(payload.get("to_hash"), "to_hash"),
        count=count,
        ts=text("ts"),
        key_id=text("key_id"),
        signature=signature,
        anchor=anchor,
    )


def signature_problem(
    payload: Mapping[str, Any], checkpoint: Checkpoint, keys: Mapping[str, Ed25519PublicKey]
) -> str | None:
    """None when the signature is valid under the key it names, else what is wrong."""
    public_key = keys.get(checkpoint.key_id)
    if public_key is None:
        return f"signed by key {checkpoint.key_id}, which is not among the verification keys"
    if not verify_signature(public_key, checkpoint.signature, signed_message(payload)):
        return f"bad signature (key {checkpoint.key_id})"
    return None

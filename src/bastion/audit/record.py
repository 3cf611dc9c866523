"""AuditRecord: one entry of the tamper-evident audit record, and the hash chain linking them.

A record is `(seq, ts, kind, payload, prev_hash, hash)`. `seq` counts from 1 without gaps; `ts`
is UTC with microseconds; `payload` is a JSON object. The record's hash is

    hash = SHA-256(bytes.fromhex(prev_hash) || canonical({"kind", "payload", "seq", "ts"}))

where canonical JSON has sorted keys, no whitespace (`,` and `:` separators), non-ASCII
characters written as UTF-8 (not `\\u` escapes), no NaN or infinities, and `ts` is rendered as
`YYYY-MM-DDTHH:MM:SS.ffffffZ`. The first record's `prev_hash` is GENESIS_HASH (64 zeros), so
every hash commits to the whole history before it. Hashes are lowercase hex.

This module is pure: it builds, serializes and hashes records and turns the session's events
into payloads. It does no I/O; stores, the writer and the verifier build on it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from bastion.pipeline.events import ConnectionEvent, StatementEvent

GENESIS_HASH = "0" * 64
"""The `prev_hash` of record 1: the chain starts from 32 zero bytes."""

KIND_CONNECTION = "connection"
KIND_STATEMENT = "statement"
KIND_APPROVAL = "approval"
KIND_POLICY_RELOAD = "policy_reload"
KIND_ADMIN = "admin"
KIND_CHECKPOINT = "checkpoint"

_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class ChainHead(NamedTuple):
    """Where the chain ends: the last record's seq and hash ((0, GENESIS_HASH) when empty)."""

    seq: int
    hash: str


EMPTY_HEAD = ChainHead(0, GENESIS_HASH)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One record of the chain. Build new ones with `chain_record`, never by hand."""

    seq: int
    ts: datetime
    kind: str
    payload: Mapping[str, Any]
    prev_hash: str
    hash: str
    # The payload exactly as hashed and stored. Stores fill it from what they read, so the
    # verifier hashes the stored bytes themselves, not a re-serialization of the parsed value.
    payload_json: str = field(default="", compare=False, repr=False)

    @property
    def canonical_payload(self) -> str:
        return self.payload_json or canonical_json(self.payload)

    def computed_hash(self) -> str:
        """The hash this record's content and prev_hash call for."""
        return record_hash(self.prev_hash, self.seq, self.ts, self.kind, self.canonical_payload)

    def to_json(self) -> str:
        """One JSON object with every field: the export and `--json` line format."""
        return (
            f'{{"hash":{json.dumps(self.hash)},"kind":{json.dumps(self.kind)},'
            f'"payload":{self.canonical_payload},"prev_hash":{json.dumps(self.prev_hash)},'
            f'"seq":{self.seq},"ts":{json.dumps(format_ts(self.ts))}}}'
        )


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """A record to write that is not a session event: an approval, a policy reload, ..."""

    kind: str
    payload: Mapping[str, Any]


# One encoder, built once: json.dumps with options builds a new one on every call.
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def canonical_json(value: Any) -> str:
    """Sorted keys, compact separators, UTF-8 text, finite numbers only."""
    return _ENCODER.encode(value)


def format_ts(ts: datetime) -> str:
    """`ts` in UTC as `YYYY-MM-DDTHH:MM:SS.ffffffZ`; naive datetimes are refused."""
    if ts.tzinfo is not UTC:
        if ts.tzinfo is None:
            raise ValueError("audit timestamps must be timezone-aware")
        ts = ts.astimezone(UTC)
    # isoformat is much faster than strftime; in UTC it always ends with "+00:00".
    return ts.isoformat(timespec="microseconds")[:-6] + "Z"


def parse_ts(text: str) -> datetime:
    return datetime.strptime(text, _TS_FORMAT).replace(tzinfo=UTC)


def ts_from_epoch(seconds: float) -> datetime:
    """A UTC datetime from a `time.time()` value, kept to whole microseconds."""
    return datetime.fromtimestamp(round(seconds * 1_000_000) / 1_000_000, UTC)


def ts_to_micros(ts: datetime) -> int:
    return (ts - _EPOCH) // _MICROSECOND


def ts_from_micros(micros: int) -> datetime:
    return _EPOCH + micros * _MICROSECOND


def hashed_bytes(seq: int, ts: datetime, kind: str, payload_json: str) -> bytes:
    """canonical({"kind", "payload", "seq", "ts"}), with the payload's stored text as is."""
    envelope = (
        f'{{"kind":{_kind_json(kind)},"payload":{payload_json},"seq":{seq},"ts":"{format_ts(ts)}"}}'
    )
    # surrogateescape: text a store read from invalid UTF-8 hashes as the bytes it holds
    # (and so fails its check) instead of stopping the verifier.
    return envelope.encode("utf-8", "surrogateescape")


_KIND_JSON: dict[str, str] = {}


def _kind_json(kind: str) -> str:
    """A kind as JSON text; the few kinds there are are encoded once each."""
    text = _KIND_JSON.get(kind)
    if text is None:
        text = json.dumps(kind, ensure_ascii=False)
        if len(_KIND_JSON) < 64:
            _KIND_JSON[kind] = text
    return text


def record_hash(prev_hash: str, seq: int, ts: datetime, kind: str, payload_json: str) -> str:
    digest = hashlib.sha256(bytes.fromhex(prev_hash))
    digest.update(hashed_bytes(seq, ts, kind, payload_json))
    return digest.hexdigest()


def chain_record(
    head: ChainHead,
    ts: datetime,
    kind: str,
    payload: Mapping[str, Any],
    payload_json: str | None = None,
) -> AuditRecord:
    """The record that follows `head` (`payload_json`: the payload already serialized)."""
    if not kind:
        raise ValueError("an audit record needs a kind")
    if payload_json is None:
        payload_json = canonical_json(payload)
    seq = head.seq + 1
    if ts.tzinfo is not UTC:
        ts = ts.astimezone(UTC)
    return AuditRecord(
        seq=seq,
        ts=ts,
        kind=kind,
        payload=payload,
        prev_hash=head.hash,
        hash=record_hash(head.hash, seq, ts, kind, payload_json),
        payload_json=payload_json,
    )


def prepare_payload(payload: Mapping[str, Any]) -> tuple[Mapping[str, Any], str]:
    """The payload and its canonical JSON, with lone surrogates (not UTF-8) replaced by U+FFFD.

    Raises TypeError or ValueError when the payload is not JSON (a non-string key, a set, NaN).
    """
    text = canonical_json(payload)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        payload = _scrub(payload)
        text = canonical_json(payload)
    return payload, text


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return "".join("\ufffd" if "\ud800" <= char <= "\udfff" else char for char in value)
    if isinstance(value, Mapping):
        return {_scrub(key): _scrub(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(item) for item in value]
    return value


def load_payload(text: str) -> dict[str, Any]:
    """The payload object stored as `text`; {} when it is not one (its hash check then fails)."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def event_payload(event: ConnectionEvent | StatementEvent) -> tuple[str, dict[str, Any]]:
    """The record kind and payload for a session event: its set fields, tuples as lists."""
    kind = KIND_CONNECTION if isinstance(event, ConnectionEvent) else KIND_STATEMENT
    payload: dict[str, Any] = {}
    # Dispatch on the exact type: this runs for every statement, and comparing an int with ""
    # and () costs more than asking its type once.
    for name in _field_names(type(event)):
        value = getattr(event, name)
        kind_of = type(value)
        if kind_of is str or kind_of is tuple:
            if value:
                payload[name] = list(value) if kind_of is tuple else value
        elif value is not None:
            payload[name] = list(value) if isinstance(value, tuple) else value
    return kind, payload


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(event_type: type[ConnectionEvent | StatementEvent]) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(event_type)
    if names is None:
        names = _FIELD_NAMES[event_type] = tuple(f.name for f in dataclasses.fields(event_type))
    return names


class IndexedFields(NamedTuple):
    """The payload values a store indexes for search."""

    user: str | None
    target: str | None
    decision: str | None
    rule: str | None
    tables: tuple[str, ...]


def indexed_fields(payload: Mapping[str, Any]) -> IndexedFields:
    """`user`, `target`, `decision`, `rule` (strings) and `tables` (a list of names)."""

    def text(name: str) -> str | None:
        value = payload.get(name)
        return value if isinstance(value, str) and value else None

    tables = payload.get("tables")
    names: tuple[str, ...] = ()
    if isinstance(tables, Sequence) and not isinstance(tables, str):
        names = tuple(name for name in tables if isinstance(name, str) and name)
    return IndexedFields(text("user"), text("target"), text("decision"), text("rule"), names)

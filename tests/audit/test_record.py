"""Records: canonical serialization, the hash chain, genesis, and events turned into payloads."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.audit.record import (
    EMPTY_HEAD,
    GENESIS_HASH,
    AuditRecord,
    ChainHead,
    canonical_json,
    chain_record,
    event_payload,
    format_ts,
    hashed_bytes,
    indexed_fields,
    parse_ts,
    ts_from_epoch,
    ts_from_micros,
    ts_to_micros,
)
from bastion.pipeline.events import ConnectionEvent, StatementEvent

from .conftest import BASE_TS

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
payloads = st.dictionaries(st.text(min_size=1, max_size=8), json_values, min_size=1, max_size=6)


def test_genesis_is_64_zeros_and_the_first_hash_follows_the_documented_formula() -> None:
    assert GENESIS_HASH == "0" * 64
    record = chain_record(EMPTY_HEAD, BASE_TS, "statement", {"user": "alice", "rows": 3})
    envelope = (
        b'{"kind":"statement","payload":{"rows":3,"user":"alice"},"seq":1,'
        b'"ts":"2024-03-01T12:00:00.123456Z"}'
    )
    assert hashed_bytes(1, BASE_TS, "statement", record.payload_json) == envelope
    assert record.hash == hashlib.sha256(bytes(32) + envelope).hexdigest()
    assert (record.seq, record.prev_hash) == (1, GENESIS_HASH)


def test_each_record_commits_to_the_previous_one() -> None:
    first = chain_record(EMPTY_HEAD, BASE_TS, "statement", {"n": 1})
    second = chain_record(ChainHead(first.seq, first.hash), BASE_TS, "statement", {"n": 2})
    assert (second.seq, second.prev_hash) == (2, first.hash)
    other_first = chain_record(EMPTY_HEAD, BASE_TS, "statement", {"n": 0})
    moved = chain_record(ChainHead(1, other_first.hash), BASE_TS, "statement", {"n": 2})
    assert moved.hash != second.hash


def test_timestamps_are_utc_with_microseconds() -> None:
    local = datetime(2024, 3, 1, 14, 0, 0, 5, tzinfo=timezone(timedelta(hours=2)))
    assert format_ts(local) == "2024-03-01T12:00:00.000005Z"
    assert parse_ts(format_ts(local)) == local
    assert ts_from_micros(ts_to_micros(local)) == local
    assert ts_from_epoch(1.0000015).microsecond == 2
    record = chain_record(EMPTY_HEAD, local, "admin", {})
    assert record.ts.tzinfo is UTC
    with pytest.raises(ValueError, match="timezone-aware"):
        format_ts(datetime(2024, 1, 1))


def test_to_json_carries_the_payload_exactly_as_hashed() -> None:
    record = chain_record(EMPTY_HEAD, BASE_TS, "statement", {"b": 1.5, "a": "é"})
    line = json.loads(record.to_json())
    assert line == {
        "hash": record.hash,
        "kind": "statement",
        "payload": {"a": "é", "b": 1.5},
        "prev_hash": GENESIS_HASH,
        "seq": 1,
        "ts": "2024-03-01T12:00:00.123456Z",
    }
    assert '"payload":{"a":"é","b":1.5}' in record.to_json()


def test_statement_events_become_payloads_without_empty_fields() -> None:
    event = StatementEvent(
        session_id="s1",
        user="alice",
        target="shop",
        protocol="simple",
        kind="select",
        statement="SELECT * FROM orders WHERE id = $1",
        fingerprint="f1",
        decision="allow",
        rule="analysts-read",
        outcome="ok",
        rows=None,
        duration_ms=1.25,
        decide_ms=0.042,
    )
    kind, payload = event_payload(event)
    assert kind == "statement"
    assert payload == {
        "session_id": "s1",
        "user": "alice",
        "target": "shop",
        "protocol": "simple",
        "kind": "select",
        "statement": "SELECT * FROM orders WHERE id = $1",
        "fingerprint": "f1",
        "decision": "allow",
        "rule": "analysts-read",
        "outcome": "ok",
        "duration_ms": 1.25,
        "decide_ms": 0.042,
    }


def test_connection_events_turn_tuples_into_lists() -> None:
    event = ConnectionEvent(
        event="connect",
        session_id="s1",
        source_ip="10.0.0.7",
        source_port=51000,
        user="alice",
        target="shop",
        outcome="ok",
        groups=("analysts", "oncall"),
        tls_version="TLSv1.3",
    )
    kind, payload = event_payload(event)
    assert kind == "connection"
    assert payload["groups"] == ["analysts", "oncall"]
    assert payload["tls_version"] == "TLSv1.3"
    assert "duration_ms" not in payload and "reason" not in payload
    # The payload is what gets hashed: it must serialize canonically.
    assert json.loads(canonical_json(payload)) == payload


def test_indexed_fields_come_from_the_payload() -> None:
    fields = indexed_fields(
        {"user": "alice", "target": "", "decision": "deny", "tables": ["a.b", 3, ""]}
    )
    assert fields.user == "alice"
    assert fields.target is None
    assert (fields.decision, fields.rule) == ("deny", None)
    assert fields.tables == ("a.b",)
    assert indexed_fields({"tables": "a.b"}).tables == ()


def test_canonical_json_refuses_nan() -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


@given(payloads)
def test_canonical_serialization_is_stable(payload: dict[str, Any]) -> None:
    text = canonical_json(payload)
    assert canonical_json(json.loads(text)) == text
    assert canonical_json(dict(reversed(list(payload.items())))) == text


@given(payloads, st.data())
def test_any_single_byte_change_in_a_payload_is_detected(
    payload: dict[str, Any], data: st.DataObject
) -> None:
    record = chain_record(EMPTY_HEAD, BASE_TS, "statement", payload)
    raw = bytearray(record.payload_json.encode("utf-8"))
    index = data.draw(st.integers(min_value=0, max_value=len(raw) - 1), label="index")
    value = data.draw(
        st.integers(min_value=0, max_value=255).filter(lambda b: b != raw[index]), label="byte"
    )
    raw[index] = value
    changed = bytes(raw).decode("utf-8", errors="surrogateescape")
    tampered = AuditRecord(
        record.seq,
        record.ts,
        record.kind,
        record.payload,
        record.prev_hash,
        record.hash,
        payload_json=changed,
    )
    assert tampered.computed_hash() != record.hash


@given(payloads, st.data())
def test_any_change_to_a_payload_value_changes_the_hash(
    payload: dict[str, Any], data: st.DataObject
) -> None:
    record = chain_record(EMPTY_HEAD, BASE_TS, "statement", payload)
    key = data.draw(st.sampled_from(sorted(payload)), label="key")
    replacement = data.draw(
        json_values.filter(lambda v: canonical_json(v) != canonical_json(payload[key])),
        label="replacement",
    )
    edited = chain_record(EMPTY_HEAD, BASE_TS, "statement", {**payload, key: replacement})
    assert edited.hash != record.hash

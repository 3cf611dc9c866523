"""FramedRelay: bytes in, forwarded bytes and inspected messages out, for every chunking."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.errors import ProtocolViolation
from bastion.session.relay import FramedRelay
from bastion.wire.postgres.framing import frame, message_bodies

SKIP = frozenset({ord("D"), ord("d")})


class Recorder:
    def __init__(self, replace: dict[int, bytes] | None = None) -> None:
        self.out = bytearray()
        self.seen: list[tuple[int, bytes]] = []
        self.replace = replace or {}

    def write(self, data: bytes) -> None:
        self.out += data

    def inspect(self, type_byte: int, body: memoryview) -> bytes | None:
        self.seen.append((type_byte, bytes(body)))
        return self.replace.get(type_byte)


def _relay(recorder: Recorder, max_length: int = 1 << 20) -> FramedRelay:
    return FramedRelay(recorder.write, recorder.inspect, SKIP, max_length)


def _stream() -> bytes:
    return b"".join(
        [
            frame(ord("T"), b"\x00\x01col"),
            *(frame(ord("D"), b"row%d" % i) for i in range(5)),
            frame(ord("D"), b"x" * 5000),
            frame(ord("C"), b"SELECT 6\x00"),
            frame(ord("Z"), b"I"),
        ]
    )


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in points:
        pieces.append(data[last:point])
        last = point
    pieces.append(data[last:])
    return [p for p in pieces if p]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10_000), max_size=30))
def test_any_chunking_forwards_the_same_bytes(cuts: list[int]) -> None:
    data = _stream()
    recorder = Recorder()
    relay = _relay(recorder)
    for chunk in _chunks(data, cuts):
        relay.feed(chunk)
    assert bytes(recorder.out) == data
    assert [t for t, _ in recorder.seen] == [ord("T"), ord("C"), ord("Z")]
    assert recorder.seen[1][1] == b"SELECT 6\x00"
    assert relay.buffered == 0


def test_one_byte_at_a_time() -> None:
    data = _stream()
    recorder = Recorder()
    relay = _relay(recorder)
    for i in range(len(data)):
        relay.feed(data[i : i + 1])
    assert bytes(recorder.out) == data
    assert len(recorder.seen) == 3


def test_skipped_messages_stream_without_buffering_whole() -> None:
    big = frame(ord("D"), b"y" * 1_000_000)
    recorder = Recorder()
    relay = _relay(recorder, max_length=1000)  # far below the row: skipped types are not limited
    relay.feed(big[:100])
    assert len(recorder.out) == 100  # forwarded at once, not held back
    relay.feed(big[100:600_000])
    assert relay.buffered == 0
    relay.feed(big[600_000:] + frame(ord("Z"), b"I"))
    assert bytes(recorder.out) == big + frame(ord("Z"), b"I")


def test_replacement_and_drop() -> None:
    data = frame(ord("N"), b"notice") + frame(ord("C"), b"X\x00") + frame(ord("Z"), b"I")
    recorder = Recorder(replace={ord("N"): b"", ord("C"): frame(ord("C"), b"Y\x00")})
    _relay(recorder).feed(data)
    assert bytes(recorder.out) == frame(ord("C"), b"Y\x00") + frame(ord("Z"), b"I")


def test_length_below_four_is_a_violation() -> None:
    relay = _relay(Recorder())
    with pytest.raises(ProtocolViolation):
        relay.feed(b"Q" + struct.pack("!I", 3) + b"xx")


def test_oversized_inspected_message_is_refused_before_its_body_arrives() -> None:
    relay = _relay(Recorder(), max_length=100)
    with pytest.raises(ProtocolViolation, match="exceeds"):
        relay.feed(b"Q" + struct.pack("!I", 10_000))


def test_streamed_messages_have_their_own_limit() -> None:
    recorder = Recorder()
    relay = FramedRelay(recorder.write, recorder.inspect, SKIP, 1 << 20, max_streamed_length=100)
    relay.feed(frame(ord("d"), b"x" * 96))  # 100 bytes counting the length field: allowed
    with pytest.raises(ProtocolViolation, match="exceeds the 100-byte limit"):
        relay.feed(frame(ord("d"), b"x" * 97))


def test_a_partial_message_is_not_rescanned_for_every_chunk() -> None:
    message = frame(ord("Q"), b"x" * 100_000 + b"\x00")
    recorder = Recorder()
    relay = _relay(recorder)
    for i in range(0, len(message), 1000):
        relay.feed(message[i : i + 1000])
    assert recorder.seen == [(ord("Q"), message[5:])]
    assert bytes(recorder.out) == message


class Holder(Recorder):
    """Holds at the first message of `hold_at`; the test releases it."""

    def __init__(self, hold_at: int, *, reinspect: bool, replace: dict[int, bytes] | None = None):
        super().__init__(replace)
        self.hold_at = hold_at
        self.reinspect = reinspect
        self.relay: FramedRelay | None = None
        self.held_once = False

    def inspect(self, type_byte: int, body: memoryview) -> bytes | None:
        replacement = super().inspect(type_byte, body)
        if type_byte == self.hold_at and not self.held_once:
            self.held_once = True
            assert self.relay is not None
            self.relay.hold(reinspect=self.reinspect)
        return replacement


@settings(max_examples=150, deadline=None)
@given(
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=20),
    reinspect=st.booleans(),
)
def test_hold_and_release_forward_the_same_bytes_in_order(cuts: list[int], reinspect: bool) -> None:
    data = _stream()
    holder = Holder(ord("C"), reinspect=reinspect)
    relay = FramedRelay(holder.write, holder.inspect, SKIP, 1 << 20)
    holder.relay = relay
    for chunk in _chunks(data, cuts):
        relay.feed(chunk)
    assert relay.holding
    assert bytes(holder.out) == data[: data.index(frame(ord("C"), b"SELECT 6\x00"))]
    relay.inject(b"N-notice")  # queued: it must not overtake what is held
    relay.release()
    assert bytes(holder.out) == data + b"N-notice"
    completions = [t for t, _ in holder.seen if t == ord("C")]
    assert len(completions) == (2 if reinspect else 1)


def test_a_held_message_keeps_the_inspectors_replacement() -> None:
    data = _stream()
    holder = Holder(ord("C"), reinspect=False, replace={ord("C"): b"REPLACED"})
    relay = FramedRelay(holder.write, holder.inspect, SKIP, 1 << 20)
    holder.relay = relay
    relay.feed(data)
    relay.release()
    assert bytes(holder.out).endswith(b"REPLACED" + frame(ord("Z"), b"I"))
    assert b"SELECT 6" not in holder.out


def test_inject_waits_for_a_streamed_message_to_end() -> None:
    recorder = Recorder()
    relay = _relay(recorder)
    big = frame(ord("D"), b"x" * 5000)
    relay.feed(big[:100])
    relay.inject(b"NOTICE")
    assert bytes(recorder.out) == big[:100]
    relay.feed(big[100:])
    assert bytes(recorder.out) == big + b"NOTICE"


class Batches:
    """Answers runs of DataRows: upper-cases every row, and remembers each run's rows."""

    def __init__(self) -> None:
        self.runs: list[list[bytes]] = []

    def inspect(self, run: memoryview) -> bytes | None:
        bodies = message_bodies(run)
        self.runs.append([bytes(body) for body in bodies])
        return b"".join(frame(ord("D"), bytes(body).upper()) for body in bodies)


def _batching(recorder: Recorder, batches: Batches, max_length: int = 1 << 16) -> FramedRelay:
    relay = FramedRelay(recorder.write, recorder.inspect, frozenset({ord("d")}), max_length)
    relay.batch_type = ord("D")
    relay.batch_inspect = batches.inspect
    return relay


@given(cuts=st.lists(st.integers(min_value=1, max_value=200), max_size=6))
@settings(max_examples=200, deadline=None)
def test_runs_of_rows_are_answered_together_whatever_the_chunking(cuts: list[int]) -> None:
    recorder, batches = Recorder(), Batches()
    relay = _batching(recorder, batches)
    stream = _stream()
    position = 0
    for cut in sorted(set(cuts)):
        relay.feed(stream[position:cut])
        position = max(position, cut)
    relay.feed(stream[position:])
    rows = [row for run in batches.runs for row in run]
    assert rows == [*(b"row%d" % i for i in range(5)), b"x" * 5000]  # once each, in order
    expected = stream.replace(b"row", b"ROW").replace(b"x" * 5000, b"X" * 5000)
    assert bytes(recorder.out) == expected
    # Other messages still go to the inspector one by one.
    assert [t for t, _ in recorder.seen] == [ord("T"), ord("C"), ord("Z")]


def test_one_chunk_of_rows_is_one_run() -> None:
    recorder, batches = Recorder(), Batches()
    _batching(recorder, batches).feed(_stream())
    assert len(batches.runs) == 1 and len(batches.runs[0]) == 6


def test_a_row_too_long_inside_a_run_is_refused() -> None:
    recorder, batches = Recorder(), Batches()
    relay = _batching(recorder, batches, max_length=1 << 10)
    oversized = b"D" + struct.pack(">I", 1 << 11) + b"x" * 8
    with pytest.raises(ProtocolViolation, match="exceeds"):
        relay.feed(frame(ord("D"), b"ok") + oversized)

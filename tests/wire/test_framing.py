"""Typed-message framing: `MessageReader` reassembly, `BodyReader` bounds, `frame` and `cstr`."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.wire.postgres.errors import WireFormatError
from bastion.wire.postgres.framing import (
    BodyReader,
    MessageReader,
    cstr,
    frame,
    skip_messages,
    skip_messages_in_python,
    type_table,
)

from .handmade import message

MAX_LENGTH = 1 << 20

# A small conversation with an empty body, a one-byte body, a longer one and a high type byte.
STREAM_MESSAGES = [
    (ord("Q"), b"SELECT 1\x00"),
    (ord("S"), b""),
    (ord("Z"), b"I"),
    (0xFF, bytes(range(256))),
    (ord("X"), b""),
]
STREAM = b"".join(bytes((t,)) + struct.pack("!I", len(b) + 4) + b for t, b in STREAM_MESSAGES)


def drain(reader: MessageReader) -> list[tuple[int, bytes]]:
    messages = []
    while (item := reader.next_message()) is not None:
        messages.append(item)
    return messages


# MessageReader.


def test_one_message() -> None:
    reader = MessageReader(MAX_LENGTH)
    reader.feed(message("Q", b"SELECT 1\x00"))
    assert reader.next_message() == (ord("Q"), b"SELECT 1\x00")
    assert reader.next_message() is None
    assert len(reader) == 0


def test_empty_reader_has_nothing() -> None:
    assert MessageReader(MAX_LENGTH).next_message() is None


def test_several_messages_in_one_chunk() -> None:
    reader = MessageReader(MAX_LENGTH)
    reader.feed(STREAM)
    assert drain(reader) == STREAM_MESSAGES
    assert len(reader) == 0


def test_one_byte_at_a_time() -> None:
    reader = MessageReader(MAX_LENGTH)
    received: list[tuple[int, bytes]] = []
    boundaries = set()
    offset = 0
    for _, body in STREAM_MESSAGES:
        offset += 5 + len(body)
        boundaries.add(offset)
    for position in range(len(STREAM)):
        reader.feed(STREAM[position : position + 1])
        got = drain(reader)
        # A message appears exactly when its last byte arrives, never earlier.
        assert bool(got) == (position + 1 in boundaries), position
        received += got
    assert received == STREAM_MESSAGES
    assert len(reader) == 0


def test_split_in_two_at_every_position() -> None:
    for split in range(1, len(STREAM)):
        reader = MessageReader(MAX_LENGTH)
        reader.feed(STREAM[:split])
        first = drain(reader)
        reader.feed(STREAM[split:])
        assert first + drain(reader) == STREAM_MESSAGES, split


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=40))
def test_any_chunking_gives_the_same_messages(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(STREAM)]
    reader = MessageReader(MAX_LENGTH)
    received: list[tuple[int, bytes]] = []
    for start, end in itertools.pairwise(points):
        reader.feed(STREAM[start:end])
        received += drain(reader)
    assert received == STREAM_MESSAGES
    assert reader.take_remaining() == b""


def test_body_does_not_change_when_more_bytes_arrive() -> None:
    reader = MessageReader(MAX_LENGTH)
    reader.feed(message("d", b"abc") + b"d")
    item = reader.next_message()
    reader.feed(b"\x00\x00\x00\x07xyz")
    assert item == (ord("d"), b"abc")
    assert type(item[1]) is bytes
    assert reader.next_message() == (ord("d"), b"xyz")


@pytest.mark.parametrize("length", [0, 1, 2, 3])
def test_length_below_four_is_rejected(length: int) -> None:
    reader = MessageReader(MAX_LENGTH)
    reader.feed(b"Q" + struct.pack("!I", length))
    with pytest.raises(WireFormatError, match="invalid message length"):
        reader.next_message()


def test_length_of_four_is_an_empty_body() -> None:
    reader = MessageReader(MAX_LENGTH)
    reader.feed(b"S\x00\x00\x00\x04")
    assert reader.next_message() == (ord("S"), b"")


def test_oversized_length_is_rejected_from_the_header_alone() -> None:
    reader = MessageReader(MAX_LENGTH)
    reader.feed(b"Q" + struct.pack("!I", MAX_LENGTH + 1))
    with pytest.raises(WireFormatError, match="exceeds"):
        reader.next_message()


def test_huge_length_is_rejected_from_the_header_alone() -> None:
    reader = MessageReader(MAX_LENGTH)
    reader.feed(b"Q\xff\xff\xff\xff")
    with pytest.raises(WireFormatError, match="exceeds"):
        reader.next_message()


def test_length_equal_to_the_maximum_waits_for_the_body() -> None:
    reader = MessageReader(MAX_LENGTH)
    reader.feed(b"d" + struct.pack("!I", MAX_LENGTH))
    assert reader.next_message() is None
    reader.feed(b"x" * (MAX_LENGTH - 4))
    assert reader.next_message() == (ord("d"), b"x" * (MAX_LENGTH - 4))


def test_incomplete_header_is_not_judged_yet() -> None:
    reader = MessageReader(MAX_LENGTH)
    reader.feed(b"Q\xff\xff\xff")
    assert reader.next_message() is None
    reader.feed(b"\xff")
    with pytest.raises(WireFormatError):
        reader.next_message()


def test_take_remaining_returns_what_follows_the_last_message() -> None:
    reader = MessageReader(MAX_LENGTH)
    # After an answer to SSLRequest the rest of the chunk belongs to the TLS handshake.
    tls_hello = b"\x16\x03\x01\x02\x00\x01"
    reader.feed(message("Z", b"I") + tls_hello)
    assert reader.next_message() == (ord("Z"), b"I")
    assert len(reader) == len(tls_hello)
    assert reader.take_remaining() == tls_hello
    assert len(reader) == 0
    assert reader.take_remaining() == b""
    assert reader.next_message() is None


def test_take_remaining_includes_a_partial_message() -> None:
    reader = MessageReader(MAX_LENGTH)
    partial = message("Q", b"SELECT 1\x00")[:7]
    reader.feed(partial)
    assert reader.next_message() is None
    assert reader.take_remaining() == partial


# BodyReader.


def test_reads_primitives_in_order() -> None:
    data = struct.pack("!hHiIB", -2, 0xFFFE, -3, 0xFFFFFFFD, 7) + b"name\x00" + b"raw" + b"tail"
    reader = BodyReader(data)
    assert reader.int16() == -2
    assert reader.uint16() == 0xFFFE
    assert reader.int32() == -3
    assert reader.uint32() == 0xFFFFFFFD
    assert reader.byte() == 7
    assert reader.cstring() == "name"
    assert reader.raw(3) == b"raw"
    assert not reader.at_end()
    assert reader.rest() == b"tail"
    assert reader.at_end()
    reader.expect_end("test")


def test_accepts_a_memoryview() -> None:
    reader = BodyReader(memoryview(b"\x00\x05ab\x00"))
    assert reader.int16() == 5
    assert reader.cstring() == "ab"


@pytest.mark.parametrize(
    ("method", "data"),
    [
        ("int16", b""),
        ("int16", b"\x00"),
        ("uint16", b"\x00"),
        ("int32", b"\x00\x00\x00"),
        ("uint32", b"\x00\x00"),
        ("byte", b""),
    ],
)
def test_truncated_integers_are_rejected(method: str, data: bytes) -> None:
    reader = BodyReader(data)
    with pytest.raises(WireFormatError, match="truncated"):
        getattr(reader, method)()


def test_failed_read_does_not_move_the_cursor() -> None:
    reader = BodyReader(b"\x00\x01\x02")
    with pytest.raises(WireFormatError):
        reader.int32()
    assert reader.int16() == 1


@pytest.mark.parametrize("data", [b"", b"abc", b"\xff\xfe"])
def test_unterminated_cstring_is_rejected(data: bytes) -> None:
    with pytest.raises(WireFormatError, match="NUL-terminated"):
        BodyReader(data).cstring()


@pytest.mark.parametrize("data", [b"\xff\x00", b"\xc3\x00", b"\xed\xa0\x80\x00", b"\xc0\x80\x00"])
def test_non_utf8_cstring_is_rejected(data: bytes) -> None:
    with pytest.raises(WireFormatError, match="UTF-8"):
        BodyReader(data).cstring()


def test_empty_cstring() -> None:
    reader = BodyReader(b"\x00\x00")
    assert reader.cstring() == ""
    assert reader.cstring() == ""
    assert reader.at_end()


@pytest.mark.parametrize(("data", "n"), [(b"", 1), (b"ab", 3), (b"ab", 1 << 40)])
def test_truncated_raw_is_rejected(data: bytes, n: int) -> None:
    with pytest.raises(WireFormatError, match="truncated"):
        BodyReader(data).raw(n)


@pytest.mark.parametrize("n", [-1, -2, -(1 << 31)])
def test_negative_raw_length_is_rejected(n: int) -> None:
    with pytest.raises(WireFormatError, match="negative"):
        BodyReader(b"abcdef").raw(n)


def test_raw_of_zero_bytes() -> None:
    reader = BodyReader(b"")
    assert reader.raw(0) == b""
    reader.expect_end("test")


def test_expect_end_with_trailing_bytes() -> None:
    reader = BodyReader(b"ab\x00!")
    reader.cstring()
    with pytest.raises(WireFormatError, match="trailing bytes in Query"):
        reader.expect_end("Query")


# frame and cstr.


@pytest.mark.parametrize(
    ("type_byte", "body", "expected"),
    [
        (ord("S"), b"", b"S\x00\x00\x00\x04"),
        (ord("Q"), b"x\x00", b"Q\x00\x00\x00\x06x\x00"),
        (ord("d"), b"y" * 300, b"d\x00\x00\x01\x30" + b"y" * 300),
    ],
)
def test_frame(type_byte: int, body: bytes, expected: bytes) -> None:
    assert frame(type_byte, body) == expected


def test_cstr() -> None:
    assert cstr("") == b"\x00"
    assert cstr("héllo") == "héllo".encode() + b"\x00"


@pytest.mark.parametrize("value", ["\x00", "a\x00", "\x00b", "a\x00b"])
def test_cstr_refuses_nul(value: str) -> None:
    with pytest.raises(WireFormatError, match="NUL"):
        cstr(value)


@pytest.mark.parametrize("value", ["\ud800", "user\udcff"])
def test_cstr_refuses_text_utf8_cannot_carry(value: str) -> None:
    # Lone surrogates reach Bastion through JSON escapes in identity claims, for instance.
    with pytest.raises(WireFormatError):
        cstr(value)


# -- the relay's walk over message boundaries (C and Python) ---------------------------------

_messages = st.lists(
    st.tuples(st.sampled_from(b"DCTdZ"), st.binary(max_size=12)), min_size=0, max_size=8
)


@given(
    messages=_messages,
    garbage=st.binary(max_size=9),
    cut=st.integers(min_value=0, max_value=200),
    types=st.sets(st.sampled_from(b"DCTdZ")),
    max_length=st.integers(min_value=0, max_value=20),
)
@settings(max_examples=500, deadline=None)
def test_skip_messages_in_c_and_python_agree(
    messages: list[tuple[int, bytes]], garbage: bytes, cut: int, types: set[int], max_length: int
) -> None:
    data = b"".join(frame(t, body) for t, body in messages) + garbage
    data = data[: max(cut, 0)] if cut < len(data) else data
    table = type_table(types)
    for start in range(len(data) + 1):
        expected = skip_messages_in_python(data, start, table, max_length)
        assert skip_messages(data, start, table, max_length) == expected
        assert skip_messages(memoryview(data), start, table, max_length) == expected


def test_skip_messages_passes_whole_messages_of_the_types_only() -> None:
    data = frame(ord("D"), b"ab") + frame(ord("D"), b"") + frame(ord("C"), b"x") + b"D\x00"
    table = type_table(b"D")
    assert skip_messages(data, 0, table, 1 << 20) == 12  # stops at the C message
    assert skip_messages(data, 12, type_table(b"CD"), 1 << 20) == 18  # the cut D stays
    assert skip_messages(data, 0, table, 5) == 0  # the first D's length word (6) is too long
    assert skip_messages(data, 0, table, 6) == 12
    bad = b"D\x00\x00\x00\x03" + frame(ord("D"), b"")
    assert skip_messages(bad, 0, table, 1 << 20) == 0  # a length below 4 is the relay's to refuse
    with pytest.raises(IndexError):
        skip_messages(data, len(data) + 1, table, 10)
    with pytest.raises(TypeError):
        skip_messages(data, 0, b"short", 10)

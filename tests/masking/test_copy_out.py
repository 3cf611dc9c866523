"""COPY ... TO STDOUT rows through a mask plan: the binary stream's framing, text rows with a
header, and malformed data failing closed."""

from __future__ import annotations

import struct

import pytest

from bastion.errors import ProtocolViolation
from bastion.masking import pgtypes
from bastion.masking.classes import SensitiveClass as C
from bastion.masking.classifier import Action, Classification
from bastion.masking.copy_out import SIGNATURE, CopyOutRewriter, decode_copy_response
from bastion.masking.copy_rows import CopyFormat
from bastion.masking.plan import MaskPlanBuilder, RowMaskPlan
from bastion.masking.tokens import TokenKey

from .datarows import column, datarow

EMAIL = Classification(Action.MASK, C.EMAIL, None, "test")
PASS = Classification.passing("test")
HEADER = SIGNATURE + struct.pack("!ii", 0, 0)
TRAILER = struct.pack("!h", -1)


def plan(fmt: int) -> RowMaskPlan:
    builder = MaskPlanBuilder(key=TokenKey(b"copy tests key, 16+ bytes"))
    built = builder.build(
        [column(pgtypes.INT4, format=fmt), column(pgtypes.TEXT, format=fmt)], [PASS, EMAIL]
    )
    assert built is not None
    return built


def binary_tuple(number: int, email: str | None) -> bytes:
    return datarow([struct.pack("!i", number), email])


def test_copy_out_response_is_decoded_and_checked() -> None:
    assert decode_copy_response(b"\x00\x00\x02\x00\x00\x00\x00") == (0, (0, 0))
    assert decode_copy_response(b"\x01\x00\x01\x00\x01") == (1, (1,))
    for bad in (b"", b"\x00\x00", b"\x00\x00\x02\x00\x00", b"\x00\x00\x01\x00\x00\x00"):
        with pytest.raises(ProtocolViolation):
            decode_copy_response(bad)


def test_binary_stream_is_masked_tuple_by_tuple() -> None:
    rewriter = CopyOutRewriter(plan(1), None, header=False)
    first = HEADER + binary_tuple(1, "ava@example.com") + binary_tuple(2, None)
    out = rewriter.rewrite(memoryview(first))
    assert out.startswith(HEADER)
    assert out[len(HEADER) :] == binary_tuple(1, "***@example.com") + binary_tuple(2, None)
    assert rewriter.rewrite(memoryview(binary_tuple(3, "bo@example.org"))) == binary_tuple(
        3, "***@example.org"
    )
    assert rewriter.rewrite(memoryview(TRAILER)) == TRAILER
    rewriter.finish()
    assert rewriter.plan.masked_cells() == {"email": 2}


def test_an_empty_binary_copy_is_header_and_trailer_in_one_message() -> None:
    rewriter = CopyOutRewriter(plan(1), None, header=False)
    assert rewriter.rewrite(memoryview(HEADER + TRAILER)) == HEADER + TRAILER
    rewriter.finish()


@pytest.mark.parametrize(
    ("messages", "problem"),
    [
        ([b"PGCOPX\n\xff\r\n\x00" + bytes(8)], "signature"),
        ([SIGNATURE + struct.pack("!ii", 1 << 16, 0)], "OIDs"),
        ([SIGNATURE + struct.pack("!ii", 0, 50)], "header"),
        ([HEADER + binary_tuple(1, "ava@example.com")[:-3]], "cut short"),
        ([HEADER + struct.pack("!hi", 2, -2)], "length -2"),
        ([HEADER + TRAILER + b"\x00"], "after its trailer"),
        ([HEADER + TRAILER, binary_tuple(1, None)], "after its trailer"),
        ([HEADER + struct.pack("!h", -3)], "-3 fields"),
    ],
)
def test_malformed_binary_copy_fails_closed(messages: list[bytes], problem: str) -> None:
    rewriter = CopyOutRewriter(plan(1), None, header=False)
    with pytest.raises(ProtocolViolation, match=problem):
        for message in messages:
            rewriter.rewrite(memoryview(message))


def test_a_binary_copy_without_its_trailer_fails_at_the_end() -> None:
    rewriter = CopyOutRewriter(plan(1), None, header=False)
    rewriter.rewrite(memoryview(HEADER + binary_tuple(1, None)))
    with pytest.raises(ProtocolViolation, match="trailer"):
        rewriter.finish()


def test_text_rows_are_masked_and_the_header_passes() -> None:
    csv = CopyFormat.of("csv", None, None, None, None)
    rewriter = CopyOutRewriter(plan(0), csv, header=True)
    assert rewriter.rewrite(memoryview(b"id,email\n")) == b"id,email\n"
    assert rewriter.rewrite(memoryview(b'7,"ava@example.com"\n')) == b"7,***@example.com\n"
    assert rewriter.rewrite(memoryview(b"8,\n")) == b"8,\n"  # NULL stays NULL
    text = CopyFormat.of("text", None, None, None, None)
    rewriter = CopyOutRewriter(plan(0), text, header=False)
    assert rewriter.rewrite(memoryview(b"7\tava@example.com\n")) == b"7\t***@example.com\n"
    with pytest.raises(ProtocolViolation):
        rewriter.rewrite(memoryview(b"7\tava@example.com\t9\n"))  # a field too many

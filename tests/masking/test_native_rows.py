"""The C row rewriter against the Python one: same bytes out, same counts, same refusals.

`RowMaskPlan.apply_batch` (Python) is the reference. Every plan here is built twice, once with
the C extension and once without, and both rewrite the same runs of DataRow messages.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.errors import ProtocolViolation
from bastion.masking import pgtypes
from bastion.masking.classes import SensitiveClass as C
from bastion.masking.classes import Strategy
from bastion.masking.classifier import Action, Classification
from bastion.masking.plan import NATIVE_ROWS, MaskPlanBuilder, RowMaskPlan
from bastion.masking.tokens import TokenKey
from bastion.wire.postgres.backend import Column
from bastion.wire.postgres.framing import frame

from .datarows import column, datarow

PASS = Classification.passing("test")
SCAN = Classification.scanned("test")
BUILDER = MaskPlanBuilder(key=TokenKey(b"native rows test key, 16+ bytes"))


def mask(sensitive_class: C, strategy: Strategy | None = None) -> Classification:
    return Classification(Action.MASK, sensitive_class, strategy, "test")


def run_of(rows: Sequence[bytes]) -> memoryview:
    return memoryview(b"".join(frame(ord("D"), row) for row in rows))


def plans(columns: list[Column], decisions: list[Classification]) -> tuple[RowMaskPlan, ...]:
    native = BUILDER.build(columns, decisions, native=True)
    python = BUILDER.build(columns, decisions, native=False)
    assert native is not None and python is not None
    assert native.native and not python.native
    return native, python


def test_the_extension_is_built() -> None:
    # Building Bastion compiles it; without it masked rows cost several times more CPU.
    assert NATIVE_ROWS


# -- random results ----------------------------------------------------------------------------

_TEXT_TYPES = [
    column(pgtypes.TEXT),
    column(pgtypes.VARCHAR),
    column(pgtypes.VARCHAR, type_modifier=4 + 12),
    column(pgtypes.BPCHAR, type_modifier=4 + 10),
]
_DECISIONS = [
    PASS,
    SCAN,
    mask(C.EMAIL),
    mask(C.EMAIL, Strategy.HASH),
    mask(C.CARD_NUMBER),
    mask(C.PHONE),
    mask(C.IBAN),
    mask(C.API_KEY, Strategy.PARTIAL),
    mask(C.PERSON_NAME),
    mask(C.PERSON_NAME, Strategy.PARTIAL),
    mask(C.SSN, Strategy.NULL),
    mask(C.PASSWORD),
]
_SAMPLES = [
    "ava.garcia7@example.com",
    "@example.com",
    "ava@",
    "a@b",
    "4242 4242 4242 4242",
    "4242424242424242",
    "+33 1 23 45 67 89",
    "FR76 3000 6000 0112 3456 7890 189",
    "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "note: card 4111111111111111, mail bob@example.org",
    "token ghp_0123456789abcdefghijABCDEFGHIJklmnopqr end",
    "Zoë Ångström",
    "café@exämple.com",
    "",
    "   ",
    "short",
    "123-45-6789",
]
_values = st.one_of(
    st.none(),
    st.sampled_from(_SAMPLES),
    st.text(max_size=40),
    st.text(alphabet="abcdefghij0123456789 .-@+_", max_size=40),
)


@st.composite
def results(draw: st.DrawFn) -> tuple[list[Column], list[Classification], list[bytes]]:
    width = draw(st.integers(min_value=1, max_value=6))
    columns = [draw(st.sampled_from(_TEXT_TYPES)) for _ in range(width)]
    decisions = [draw(st.sampled_from(_DECISIONS)) for _ in range(width)]
    if all(d.action is Action.PASS for d in decisions):
        decisions[0] = SCAN
    rows = draw(
        st.lists(st.lists(_values, min_size=width, max_size=width), min_size=1, max_size=12)
    )
    return columns, decisions, [datarow(row) for row in rows]


@given(result=results())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_c_rewriter_writes_what_the_python_one_does(
    result: tuple[list[Column], list[Classification], list[bytes]],
) -> None:
    columns, decisions, rows = result
    native, python = plans(columns, decisions)
    run = run_of(rows)
    expected = run_of(python.apply_batch([memoryview(row) for row in rows])).tobytes()
    rewritten = native.apply_run(run)
    assert (run.tobytes() if rewritten is None else rewritten) == expected
    assert native.masked_cells() == python.masked_cells()
    assert python.fresh().apply_run(run) == (None if expected == run.tobytes() else expected)


def test_counts_add_up_over_runs() -> None:
    native, python = plans([column(pgtypes.TEXT)] * 3, [mask(C.EMAIL), SCAN, mask(C.CARD_NUMBER)])
    rows = [
        datarow(["x@example.com", "call 4111 1111 1111 1111", "4242424242424242"]),
        datarow([None, "nothing here", "4000056655665556"]),
        datarow(["y@example.org", None, None]),
    ]
    for plan in (native, python):
        plan.apply_run(run_of(rows))
        plan.apply_run(run_of(rows[:1]))
    assert native.masked_cells() == python.masked_cells() == {"email": 3, "card_number": 5}
    assert native.fresh().masked_cells() == {}


def test_a_run_with_nothing_to_change_comes_back_as_none() -> None:
    native, python = plans([column(pgtypes.INT4), column(pgtypes.TEXT)], [PASS, SCAN])
    run = run_of([datarow(["1", "plain words"]), datarow(["2", None]), datarow(["3", ""])])
    assert native.apply_run(run) is None
    assert python.apply_run(run) is None


def test_columns_after_the_last_with_work_are_not_read() -> None:
    # The second field's length (80) runs past the row, but no column after the first needs
    # work, so neither rewriter reads it.
    row = b"\x00\x02" + _field(b"hunter2") + struct.pack("!i", 80) + b"x"
    for plan in plans([column(pgtypes.TEXT), column(pgtypes.TEXT)], [mask(C.PASSWORD), PASS]):
        out = plan.apply_run(run_of([row]))
        assert out is not None and b"hunter2" not in out


def test_a_large_run_then_a_small_one_reuse_the_work_space() -> None:
    native, python = plans([column(pgtypes.TEXT)] * 2, [mask(C.EMAIL), SCAN])
    big = [datarow([f"user{i}@example.com", f"key sk_live_{i:024d}"]) for i in range(3000)]
    small = big[:2]
    for rows in (big, small, big):
        expected = run_of(python.apply_batch([memoryview(r) for r in rows])).tobytes()
        assert native.apply_run(run_of(rows)) == expected


def test_a_failing_masker_leaves_the_rewriter_usable() -> None:
    calls = []

    def failing(value: bytes) -> bytes:
        calls.append(value)
        raise RuntimeError("masker failed")

    native, _ = plans([column(pgtypes.TEXT)], [mask(C.PERSON_NAME, Strategy.PARTIAL)])
    from bastion.masking import _rowmask

    rewriter = _rowmask.RowRewriter(((_rowmask.CALL, failing),))
    with pytest.raises(RuntimeError, match="masker failed"):
        rewriter.rewrite(run_of([datarow(["Ava"])]), lambda *args: [])
    with pytest.raises(RuntimeError, match="masker failed"):
        rewriter.rewrite(run_of([datarow(["Bob"])]), lambda *args: [])
    assert calls == [b"Ava", b"Bob"]
    assert native.apply_run(run_of([datarow(["Ava Garcia"])])) is not None


def test_bad_operations_are_refused() -> None:
    from bastion.masking import _rowmask

    with pytest.raises(ValueError, match="columns"):
        _rowmask.RowRewriter(())
    with pytest.raises(ValueError, match="length word"):
        _rowmask.RowRewriter(((_rowmask.CONSTANT, b"\x00\x00\x00\x09abc"),))
    with pytest.raises(TypeError):
        _rowmask.RowRewriter(((_rowmask.CALL, "not callable"),))
    with pytest.raises(ValueError, match="unknown operation"):
        _rowmask.RowRewriter(((99,),))


def test_a_scanner_answer_out_of_range_is_an_error() -> None:
    from bastion.masking import _rowmask

    rewriter = _rowmask.RowRewriter(((_rowmask.SCAN,),))
    with pytest.raises(IndexError):
        rewriter.rewrite(run_of([datarow(["text"])]), lambda *args: [(1, b"x")])
    with pytest.raises(TypeError):
        rewriter.rewrite(run_of([datarow(["text"])]), lambda *args: [(0, "not bytes")])


# -- malformed rows ----------------------------------------------------------------------------


def _field(value: bytes) -> bytes:
    return struct.pack("!i", len(value)) + value


MALFORMED = [
    pytest.param(b"D" + struct.pack("!i", 9) + b"\x00\x02" + _field(b"x"), id="field count"),
    pytest.param(b"D" + struct.pack("!i", 10) + b"\x00\x01" + b"\xff\xff\xff\xfe", id="length -2"),
    pytest.param(b"D" + struct.pack("!i", 10) + b"\x00\x01" + _field(b"abcd")[:4], id="past end"),
    pytest.param(b"D" + struct.pack("!i", 7) + b"\x00\x01\x00", id="cut length word"),
    pytest.param(b"D\x00\x00", id="cut header"),
    pytest.param(b"D" + struct.pack("!i", 40) + b"\x00\x01" + _field(b"x"), id="message past run"),
]


@pytest.mark.parametrize("message", MALFORMED)
def test_malformed_rows_are_refused_by_both(message: bytes) -> None:
    for plan in plans([column(pgtypes.TEXT)], [mask(C.EMAIL)]):
        with pytest.raises(ProtocolViolation):
            plan.apply_run(memoryview(message))


def test_a_foreign_message_inside_a_run_is_refused() -> None:
    native, _ = plans([column(pgtypes.TEXT)], [mask(C.EMAIL)])
    with pytest.raises(ProtocolViolation, match="type C"):
        native.apply_run(memoryview(frame(ord("D"), datarow(["a@b.c"])) + frame(ord("C"), b"x")))


# -- damaged runs: never a crash, the same verdict as Python -----------------------------------

_FUZZ_COLUMNS = [column(pgtypes.TEXT), column(pgtypes.TEXT), column(pgtypes.INT4), column(25)]
_FUZZ_DECISIONS = [mask(C.EMAIL), SCAN, mask(C.CARD_NUMBER), PASS]
_FUZZ_ROWS = [
    datarow(["ava@example.com", "key sk_live_4eC39HqLyjWDarjtT1zdp7dc", "42", "x"]),
    datarow([None, "call 4111 1111 1111 1111", None, None]),
    datarow(["é@example.com", "", "7", "tail"]),
]


@given(
    cuts=st.lists(
        st.tuples(st.integers(min_value=0, max_value=400), st.integers(min_value=0, max_value=255)),
        max_size=6,
    ),
    truncate=st.integers(min_value=0, max_value=400),
)
@settings(max_examples=1500, deadline=None)
def test_damaged_runs_never_crash_and_get_the_python_verdict(
    cuts: list[tuple[int, int]], truncate: int
) -> None:
    data = bytearray(run_of(_FUZZ_ROWS))
    for position, byte in cuts:
        if position < len(data) and position % 13 != 0:  # keep most type bytes: rows are rows
            data[position] = byte
    damaged = memoryview(bytes(data[: max(truncate, 1)]))
    native, python = plans(_FUZZ_COLUMNS, _FUZZ_DECISIONS)
    try:
        expected: bytes | ProtocolViolation | None = python.apply_run(damaged)
    except ProtocolViolation as error:
        expected = error
    try:
        got: bytes | ProtocolViolation | None = native.apply_run(damaged)
    except ProtocolViolation as error:
        got = error
    if isinstance(got, ProtocolViolation):
        # Only the C rewriter checks each message's type (the relay hands it DataRows alone).
        assert isinstance(expected, ProtocolViolation) or "of type" in str(got), got
    else:
        assert not isinstance(expected, ProtocolViolation), expected
        assert got == expected

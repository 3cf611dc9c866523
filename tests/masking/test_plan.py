"""RowMaskPlan: DataRow bodies in, DataRow bodies out; only the fields that need work change."""

from __future__ import annotations

import struct

import pytest

from bastion.demo.sample import generate_sample
from bastion.errors import ProtocolViolation
from bastion.masking import pgtypes
from bastion.masking.classes import SensitiveClass as C
from bastion.masking.classes import Strategy
from bastion.masking.classifier import Action, Classification
from bastion.masking.plan import MaskPlanBuilder, RowMaskPlan, mask_text
from bastion.masking.tokens import TokenKey

from .datarows import column, datarow, fields

PASS = Classification.passing("test")
SCAN = Classification.scanned("test")


def mask(sensitive_class: C, strategy: Strategy | None = None) -> Classification:
    """Mask as `sensitive_class`; no strategy means the builder's default for the class."""
    return Classification(Action.MASK, sensitive_class, strategy, "test")


@pytest.fixture(scope="module")
def builder() -> MaskPlanBuilder:
    return MaskPlanBuilder(key=TokenKey(b"plan tests key, 16+ bytes"))


def build(
    builder: MaskPlanBuilder, types: list[int], decisions: list[Classification], fmt: int = 0
) -> RowMaskPlan:
    plan = builder.build([column(t, format=fmt) for t in types], decisions)
    assert plan is not None
    return plan


def test_no_plan_when_nothing_needs_work(builder: MaskPlanBuilder) -> None:
    columns = [column(pgtypes.INT4), column(pgtypes.TEXT), column(pgtypes.TIMESTAMPTZ)]
    assert builder.build(columns, [PASS, PASS, PASS]) is None
    # Scanning is pointless for types that cannot hold text: still no plan.
    assert builder.build(columns[:1] + columns[2:], [SCAN, SCAN]) is None


def test_masked_and_scanned_fields_change_and_the_others_stay(builder: MaskPlanBuilder) -> None:
    plan = build(
        builder,
        [pgtypes.INT4, pgtypes.TEXT, pgtypes.TEXT, pgtypes.TEXT, pgtypes.TEXT, pgtypes.DATE],
        [PASS, mask(C.PERSON_NAME), mask(C.EMAIL), PASS, SCAN, PASS],
    )
    row = datarow(
        [
            "7",
            "Ava García",
            "ava.garcia7@example.com",
            "Lyon",
            "call +1 (212) 555-0187 or mail x@example.org",
            "2024-03-01",
        ]
    )
    assert fields(plan.apply(memoryview(row))) == [
        b"7",
        b"****",
        b"***@example.com",
        b"Lyon",
        b"call +* (***) ***-**87 or mail *@example.org",
        b"2024-03-01",
    ]


def test_shown_classes_stay_in_clear_inside_scanned_text(builder: MaskPlanBuilder) -> None:
    columns = [column(pgtypes.TEXT), column(pgtypes.TEXT)]
    plan = builder.build(columns, [SCAN, mask(C.EMAIL)], frozenset({C.EMAIL}))
    assert plan is not None
    text = "mail x@example.org, card 4111 1111 1111 1111"
    row = datarow([text, "ava@example.com"])
    (note, email) = fields(plan.apply(memoryview(row)))
    assert note is not None and note.startswith(b"mail x@example.org, card ")
    assert b"4111 1111 1111 1111" not in note
    assert email == b"***@example.com"  # a column masked by name is not this plan's to show
    assert plan.masked_cells() == {"card_number": 1, "email": 1}


def test_null_fields_stay_null_and_empty_fields_are_handled(builder: MaskPlanBuilder) -> None:
    plan = build(
        builder,
        [pgtypes.TEXT, pgtypes.TEXT, pgtypes.TEXT],
        [mask(C.EMAIL), SCAN, mask(C.SECRET)],
    )
    row = datarow([None, None, ""])
    assert fields(plan.apply(memoryview(row))) == [None, None, b"****"]
    assert fields(plan.apply(memoryview(datarow(["", "", None])))) == [b"", b"", None]


def test_a_row_without_findings_is_returned_byte_for_byte(builder: MaskPlanBuilder) -> None:
    plan = build(builder, [pgtypes.INT4, pgtypes.TEXT, pgtypes.TEXT], [PASS, SCAN, PASS])
    row = datarow(["1", "Prefers delivery after 5pm.", "ava@example.com"])
    assert plan.apply(memoryview(row)) == row


def test_columns_after_the_last_worked_one_are_copied_undecoded(builder: MaskPlanBuilder) -> None:
    plan = build(builder, [pgtypes.TEXT, pgtypes.TEXT, pgtypes.TEXT], [mask(C.SECRET), PASS, PASS])
    row = datarow(["secret", "b", "c"])
    # Corrupt the last field's length: the plan never reads it, the bytes pass as they were.
    tampered = row[:-5] + struct.pack("!i", 99) + row[-1:]
    assert plan.apply(memoryview(tampered)).endswith(tampered[-5:])


def test_null_strategy_and_binary_format(builder: MaskPlanBuilder) -> None:
    plan = build(
        builder,
        [pgtypes.INT8, pgtypes.TEXT, pgtypes.UUID],
        [mask(C.CARD_NUMBER, Strategy.HASH), mask(C.EMAIL, Strategy.NULL), mask(C.TOKEN)],
        fmt=1,
    )
    row = datarow([(4111111111111111).to_bytes(8, "big"), b"ava@example.com", bytes(range(16))])
    out = fields(plan.apply(memoryview(row)))
    assert out[0] is not None and len(out[0]) == 8 and out[0] != row[6:14]
    assert out[1] is None
    assert out[2] == bytes(16)


def test_apply_batch_equals_apply_row_by_row(builder: MaskPlanBuilder) -> None:
    data = generate_sample(120)
    rows = [
        memoryview(datarow([str(c.id), c.full_name, c.email, c.city, c.notes, c.ssn]))
        for c in data.customers
    ]
    decisions = [PASS, mask(C.PERSON_NAME), mask(C.EMAIL, Strategy.HASH), SCAN, SCAN, SCAN]
    one = build(builder, [pgtypes.INT4] + [pgtypes.TEXT] * 5, decisions)
    many = build(builder, [pgtypes.INT4] + [pgtypes.TEXT] * 5, decisions)
    assert many.apply_batch(rows) == [one.apply(row) for row in rows]
    assert one.masked_cells() == many.masked_cells()
    assert many.apply_batch([]) == []


def test_no_demo_secret_survives_a_batch(builder: MaskPlanBuilder) -> None:
    """Every value the sample shop must protect is gone from the masked rows."""
    data = generate_sample(200)
    rows = [
        memoryview(datarow([str(c.id), c.full_name, c.email, c.phone, c.card_number, c.notes]))
        for c in data.customers
    ]
    plan = build(
        builder,
        [pgtypes.INT4] + [pgtypes.TEXT] * 5,
        [PASS, mask(C.PERSON_NAME), mask(C.EMAIL), mask(C.PHONE), mask(C.CARD_NUMBER), SCAN],
    )
    output = b"".join(plan.apply_batch(rows))
    for customer in data.customers:
        for value in (customer.full_name, customer.email, customer.phone, customer.card_number):
            assert value.encode() not in output
    for hidden in data.hidden_in_notes.values():
        assert hidden.encode() not in output


def test_masked_cells_are_counted_per_class(builder: MaskPlanBuilder) -> None:
    plan = build(
        builder, [pgtypes.TEXT, pgtypes.TEXT, pgtypes.TEXT], [mask(C.EMAIL), SCAN, mask(C.SSN)]
    )
    plan.apply(memoryview(datarow(["a@example.com", "4111111111111111 and b@example.com", None])))
    plan.apply_batch([memoryview(datarow([None, "nothing", "123-45-6789"]))])
    assert plan.masked_cells() == {C.EMAIL: 2, C.CARD_NUMBER: 1, C.SSN: 1}


def test_json_columns_stay_valid(builder: MaskPlanBuilder) -> None:
    plan = build(builder, [pgtypes.JSONB], [SCAN], fmt=1)
    row = datarow([b'\x01{"card": 4111111111111111, "mail": "ava@example.com"}'])
    [out] = fields(plan.apply(memoryview(row)))
    assert out == b'\x01{"card": 9999999999991111, "mail": "***@example.com"}'


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x00",
        struct.pack("!h", 3),  # announces three fields, has none
        struct.pack("!hi", 2, 5) + b"abc",  # field shorter than its length
        struct.pack("!hi", 2, -7),  # a negative length other than -1
        datarow(["a"]),  # one field where the RowDescription had two
    ],
)
def test_malformed_rows_fail_closed(builder: MaskPlanBuilder, body: bytes) -> None:
    plan = build(builder, [pgtypes.TEXT, pgtypes.TEXT], [SCAN, mask(C.SECRET)])
    with pytest.raises(ProtocolViolation):
        plan.apply(memoryview(body))
    with pytest.raises(ProtocolViolation):
        plan.apply_batch([memoryview(datarow(["x", "y"])), memoryview(body)])


def test_decisions_must_match_columns(builder: MaskPlanBuilder) -> None:
    with pytest.raises(ValueError):
        builder.build([column(pgtypes.TEXT)], [])


def test_mask_text_for_free_text() -> None:
    text, counts = mask_text(
        'ERROR: invalid input syntax for type integer: "ava@example.com" (card 4111111111111111)'
    )
    assert text == (
        'ERROR: invalid input syntax for type integer: "***@example.com" (card ************1111)'
    )
    assert counts == {C.EMAIL: 1, C.CARD_NUMBER: 1}
    assert mask_text("nothing to see") == ("nothing to see", {})
    assert mask_text("Ünïcödé ava@example.com ✓")[0] == "Ünïcödé ***@example.com ✓"


def test_mask_text_with_a_null_class_drops_the_text() -> None:
    builder = MaskPlanBuilder(strategies={C.SSN: Strategy.NULL})
    assert builder.mask_text("ssn 123-45-6789") == ("", {C.SSN: 1})

"""The pipeline-facing planner: RowDescription columns (with origins) to a plan."""

from __future__ import annotations

from bastion.masking import pgtypes
from bastion.masking.classes import SensitiveClass as C
from bastion.masking.classes import Strategy
from bastion.masking.classifier import Classification
from bastion.masking.plan import MaskPlanBuilder
from bastion.masking.planner import CatalogMaskPlanner
from bastion.pipeline.stages import MaskPlanner

from .datarows import column, datarow, fields

CUSTOMERS = 16_400


def planner() -> CatalogMaskPlanner:
    return CatalogMaskPlanner(
        MaskPlanBuilder(),
        {
            (CUSTOMERS, 1): Classification.passing("int4"),
            (CUSTOMERS, 3): Classification.masked(C.EMAIL, Strategy.PARTIAL, "name rule"),
            (CUSTOMERS, 8): Classification.passing("label: none"),
        },
    )


def test_it_is_a_pipeline_mask_planner() -> None:
    stage: MaskPlanner = planner()  # checked by mypy where tests are type-checked
    assert callable(stage.plan)


def test_known_origins_take_their_classification() -> None:
    columns = [
        column(pgtypes.INT4, table_oid=CUSTOMERS, attnum=1),
        column(pgtypes.TEXT, table_oid=CUSTOMERS, attnum=3),
        column(pgtypes.TEXT, table_oid=CUSTOMERS, attnum=8),
    ]
    plan = planner().plan(None, None, columns)
    assert plan is not None
    row = datarow(["1", "ava@example.com", "bob@example.com"])
    assert fields(plan.apply(memoryview(row))) == [b"1", b"***@example.com", b"bob@example.com"]


def test_columns_without_a_known_origin_are_scanned_when_they_can_hold_text() -> None:
    columns = [
        column(pgtypes.TEXT),  # upper(email): an expression, no origin
        column(pgtypes.TEXT, table_oid=99_999, attnum=2),  # a table the cache has not seen
        column(pgtypes.INT8),  # count(*)
    ]
    plan = planner().plan(None, None, columns)
    assert plan is not None
    row = datarow(["AVA@EXAMPLE.COM", "4111111111111111", "4111111111111111"])
    assert fields(plan.apply(memoryview(row))) == [
        b"***@EXAMPLE.COM",
        b"************1111",
        b"4111111111111111",
    ]


def test_nothing_to_do_means_no_plan() -> None:
    columns = [column(pgtypes.INT4, table_oid=CUSTOMERS, attnum=1), column(pgtypes.INT8)]
    assert planner().plan(None, None, columns) is None

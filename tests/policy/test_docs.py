"""The policies in docs/policy.md load, and the worked examples do what the page says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from bastion.pipeline.decision import Allow, Deny, RequireApproval
from bastion.policy.engine import PolicyEngine
from bastion.policy.loader import policy_from_mapping
from bastion.policy.model import Policy
from bastion.sql.statement import ColumnRef

from .conftest import MONDAY_1030, PRODUCTION, connection, statement, table

DOC = Path(__file__).resolve().parents[2] / "docs" / "policy.md"
BLOCKS = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
POLICIES = [block for block in BLOCKS if block.startswith("version: 1")]


def load(block: str) -> Policy:
    return policy_from_mapping(yaml.safe_load(block), source="docs/policy.md")


def test_the_page_has_whole_policies() -> None:
    assert len(POLICIES) >= 4


@pytest.mark.parametrize("block", POLICIES)
def test_every_whole_policy_on_the_page_loads(block: str) -> None:
    load(block)


def test_the_file_overview_loads() -> None:
    (overview,) = [block for block in BLOCKS if block.startswith("version: 1  ")]
    load(overview)


def test_card_number_example() -> None:
    (block,) = [block for block in POLICIES if "no-card-numbers" in block]
    policy_engine = PolicyEngine(load(block), clock=lambda: MONDAY_1030)
    dba = connection(groups=("dba",))
    star = statement(
        "select",
        tables_read=(table("customers"),),
        columns=(ColumnRef("*", "projection", table("customers")),),
    )
    assert isinstance(policy_engine.decide(dba, [star]), Deny)
    delete = statement("delete", has_where=True, tables_written=(table("orders"),))
    decision = policy_engine.decide(dba, [delete])
    assert isinstance(decision, RequireApproval)
    assert decision.approver_groups == ("dba-leads",)


def test_sandbox_example() -> None:
    (block,) = [block for block in POLICIES if "sandbox" in block and "engineers" in block]
    policy_engine = PolicyEngine(load(block), clock=lambda: MONDAY_1030)
    engineer = connection(groups=("engineering",), labels=PRODUCTION, target="prod")
    assert isinstance(policy_engine.decide(engineer, [statement("drop_table")]), RequireApproval)
    assert isinstance(policy_engine.decide(engineer, [statement("set_role")]), Deny)
    assert isinstance(policy_engine.decide(engineer, [statement("do")]), RequireApproval)
    sandbox = connection(groups=("anyone",), target="sandbox")
    assert isinstance(policy_engine.decide(sandbox, [statement("drop_table")]), Allow)

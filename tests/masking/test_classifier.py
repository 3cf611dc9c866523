"""Column classification for a target: labels, then name rules, then the type."""

from __future__ import annotations

import pytest

from bastion.errors import ConfigError
from bastion.masking import pgtypes
from bastion.masking.classes import SensitiveClass as C
from bastion.masking.classes import Strategy
from bastion.masking.classifier import (
    Action,
    CatalogColumn,
    classify_column,
    classify_columns,
    unmatched_labels,
)

CUSTOMERS = 16_400
ORDERS = 16_410


def col(table_oid: int, attnum: int, table: str, name: str, type_name: str) -> CatalogColumn:
    type_oid = pgtypes.TYPE_NAMES.get(type_name, 90_000)
    return CatalogColumn(table_oid, attnum, "public", table, name, type_oid, type_name)


DEMO = [
    col(CUSTOMERS, 1, "customers", "id", "int4"),
    col(CUSTOMERS, 2, "customers", "full_name", "text"),
    col(CUSTOMERS, 3, "customers", "email", "text"),
    col(CUSTOMERS, 4, "customers", "phone", "text"),
    col(CUSTOMERS, 5, "customers", "card_number", "text"),
    col(CUSTOMERS, 6, "customers", "ssn", "text"),
    col(CUSTOMERS, 7, "customers", "birth_date", "date"),
    col(CUSTOMERS, 8, "customers", "city", "text"),
    col(CUSTOMERS, 9, "customers", "notes", "text"),
    col(ORDERS, 1, "orders", "id", "int4"),
    col(ORDERS, 4, "orders", "status", "text"),
    col(ORDERS, 5, "orders", "total", "numeric"),
]


def test_the_demo_schema_with_labels() -> None:
    result = classify_columns(
        DEMO,
        labels={
            "public.customers.email": "email:hash",
            "public.customers.city": "address",
            "public.orders.status": "none",
        },
        strategies={C.PHONE: Strategy.REDACT},
    )
    summary = {key: (c.action, c.sensitive_class, c.strategy) for key, c in result.items()}
    assert summary == {
        (CUSTOMERS, 1): (Action.PASS, None, None),
        (CUSTOMERS, 2): (Action.MASK, C.PERSON_NAME, Strategy.REDACT),
        (CUSTOMERS, 3): (Action.MASK, C.EMAIL, Strategy.HASH),
        (CUSTOMERS, 4): (Action.MASK, C.PHONE, Strategy.REDACT),
        (CUSTOMERS, 5): (Action.MASK, C.CARD_NUMBER, Strategy.PARTIAL),
        (CUSTOMERS, 6): (Action.MASK, C.SSN, Strategy.REDACT),
        (CUSTOMERS, 7): (Action.MASK, C.BIRTH_DATE, Strategy.REDACT),
        (CUSTOMERS, 8): (Action.MASK, C.ADDRESS, Strategy.REDACT),
        (CUSTOMERS, 9): (Action.SCAN, None, None),
        (ORDERS, 1): (Action.PASS, None, None),
        (ORDERS, 4): (Action.PASS, None, None),
        (ORDERS, 5): (Action.PASS, None, None),
    }
    assert result[(CUSTOMERS, 3)].reason == "label: email:hash"
    assert result[(CUSTOMERS, 2)].reason.startswith("name rule: person_name")
    assert result[(CUSTOMERS, 9)].reason == "content scan: text can hold free text"
    assert "cannot hold free text" in result[(ORDERS, 5)].reason


def test_unknown_types_are_scanned_and_labels_win_over_names() -> None:
    citext = col(CUSTOMERS, 10, "customers", "nickname", "citext")
    assert classify_column(citext).action is Action.SCAN
    email = col(CUSTOMERS, 3, "customers", "email", "text")
    assert classify_column(email, "scan").action is Action.SCAN
    assert classify_column(email, "none").action is Action.PASS


def test_a_scan_label_on_a_type_without_text_is_explained() -> None:
    result = classify_column(col(ORDERS, 5, "orders", "total", "numeric"), "scan")
    assert result.action is Action.PASS and "numeric cannot hold text" in result.reason


@pytest.mark.parametrize("label", ["emial", "email:shred", ""])
def test_bad_labels_name_the_column(label: str) -> None:
    with pytest.raises(ConfigError, match=r"public\.customers\.email"):
        classify_column(col(CUSTOMERS, 3, "customers", "email", "text"), label)


def test_unmatched_labels() -> None:
    labels = {"public.customers.email": "email", "public.customers.emial": "email"}
    assert unmatched_labels(DEMO, labels) == ["public.customers.emial"]

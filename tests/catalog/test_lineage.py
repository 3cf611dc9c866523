"""View lineage on hand-made catalogs: the shapes a live server rarely produces, and the
fallbacks when a definition cannot be followed."""

from __future__ import annotations

import pytest

from bastion.catalog.classify import classify_catalog
from bastion.catalog.lineage import referenced_columns, view_lineage
from bastion.catalog.model import Catalog, Relation, RelationKind
from bastion.catalog.scope import Lineage, LineageUnresolved, merge
from bastion.masking import pgtypes
from bastion.masking.classes import SensitiveClass, Strategy
from bastion.masking.classifier import Action, CatalogColumn, Classification

CUSTOMERS = 100
ORDERS = 200
VIEW = 300
EMAIL = (CUSTOMERS, 2)
CITY = (CUSTOMERS, 3)
ID = (CUSTOMERS, 1)


def make_catalog(definition: str | None, view_columns: list[tuple[str, int]]) -> Catalog:
    relations = [
        Relation(CUSTOMERS, "public", "customers", RelationKind.TABLE),
        Relation(ORDERS, "public", "orders", RelationKind.TABLE),
        Relation(VIEW, "public", "v", RelationKind.VIEW, definition=definition),
    ]
    columns = [
        CatalogColumn(CUSTOMERS, 1, "public", "customers", "id", pgtypes.INT4, "integer"),
        CatalogColumn(CUSTOMERS, 2, "public", "customers", "email", pgtypes.TEXT, "text"),
        CatalogColumn(CUSTOMERS, 3, "public", "customers", "city", pgtypes.TEXT, "text"),
        CatalogColumn(ORDERS, 1, "public", "orders", "id", pgtypes.INT4, "integer"),
        CatalogColumn(ORDERS, 3, "public", "orders", "status", pgtypes.TEXT, "text"),
    ]
    for index, (name, type_oid) in enumerate(view_columns, start=1):
        columns.append(CatalogColumn(VIEW, index, "public", "v", name, type_oid, "t"))
    return Catalog.of(relations, columns)


def view_decisions(definition: str | None, *columns: tuple[str, int]) -> list[Classification]:
    catalog = make_catalog(definition, list(columns))
    result = classify_catalog(catalog)
    return [result.classifications[(VIEW, index)] for index in range(1, len(columns) + 1)]


def lineage_of(definition: str) -> list[Lineage]:
    return view_lineage(definition, make_catalog(definition, []))


def test_plain_references_keep_their_origin() -> None:
    [email, city] = lineage_of(
        "SELECT c.email, city FROM public.customers c JOIN public.orders o ON o.id = c.id"
    )
    assert email == Lineage.of_column(EMAIL)
    assert city == Lineage.of_column(CITY)


def test_a_cast_or_an_expression_is_no_longer_a_plain_reference() -> None:
    [cast, concat] = lineage_of(
        "SELECT customers.email::varchar, customers.email || customers.city FROM public.customers"
    )
    assert cast == Lineage(None, frozenset({EMAIL}))
    assert concat == Lineage(None, frozenset({EMAIL, CITY}))


def test_names_the_server_figures_for_unnamed_columns() -> None:
    [value] = lineage_of("SELECT s.lower FROM (SELECT lower(email) FROM public.customers) s")
    assert value.sources == frozenset({EMAIL})


def test_an_unknown_column_of_a_known_relation_reads_the_whole_row() -> None:
    [value] = lineage_of("SELECT s.nonesuch FROM (SELECT email, id FROM public.customers) s")
    assert value.sources == frozenset({EMAIL, ID})


def test_values_lists_carry_no_columns() -> None:
    [a, b] = lineage_of("SELECT * FROM (VALUES (1, 'a'), (2, 'b')) v(a, b)")
    assert a == b == Lineage(None, frozenset())


def test_star_over_a_function_cannot_be_expanded() -> None:
    with pytest.raises(LineageUnresolved):
        lineage_of("SELECT * FROM public.customers c, LATERAL public.f(c.email) g")


def test_merge_keeps_an_origin_only_when_every_arm_agrees() -> None:
    same = merge([Lineage.of_column(EMAIL), Lineage.of_column(EMAIL)])
    assert same.plain and same.origin == EMAIL
    different = merge([Lineage.of_column(EMAIL), Lineage.of_column(CITY)])
    assert different.origin is None and different.sources == {EMAIL, CITY}


def test_a_definition_that_cannot_be_followed_falls_back_to_everything_it_names() -> None:
    definition = "SELECT * FROM public.customers c, LATERAL public.f(c.id) g"
    [first, second] = view_decisions(definition, ("a", pgtypes.TEXT), ("b", pgtypes.INT4))
    for decided in (first, second):
        assert decided.action is Action.MASK  # email is among what it names
        assert decided.sensitive_class is SensitiveClass.EMAIL
        assert decided.reason.startswith("view definition not followed")


def test_a_definition_with_more_columns_than_the_view_falls_back() -> None:
    [only] = view_decisions("SELECT id, status FROM public.orders", ("a", pgtypes.TEXT))
    assert only.action is Action.SCAN
    assert only.reason.startswith("view definition not followed (2 output columns for 1")


def test_an_unparsable_or_missing_definition_masks_the_whole_view() -> None:
    for definition in ("SELECT FROM WHERE (", None):
        [value, number] = view_decisions(definition, ("a", pgtypes.TEXT), ("b", pgtypes.INT4))
        for decided in (value, number):
            assert (decided.action, decided.sensitive_class, decided.strategy) == (
                Action.MASK,
                SensitiveClass.SECRET,
                Strategy.REDACT,
            )


def test_referenced_columns_of_an_unparsable_definition() -> None:
    assert referenced_columns("SELECT FROM WHERE (", make_catalog(None, [])) is None


def test_computed_from_several_masked_columns_takes_the_strategy_that_shows_least() -> None:
    definition = "SELECT customers.email || customers.city AS v FROM public.customers"
    catalog = make_catalog(definition, [("v", pgtypes.TEXT)])
    labels = {"public.customers.city": "address"}  # address: redact; email: partial
    decided = classify_catalog(catalog, labels).classifications[(VIEW, 1)]
    assert (decided.sensitive_class, decided.strategy) == (SensitiveClass.ADDRESS, Strategy.REDACT)
    assert decided.reason == ("computed from public.customers.city and 1 more masked columns")

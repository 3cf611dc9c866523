"""Reading and classifying a real catalog: the demo shop plus domains, dropped columns,
partitions, a foreign table, views of every shape and a materialized view."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from bastion.catalog.classify import CatalogClassification, classify_catalog
from bastion.catalog.loader import load_catalog
from bastion.catalog.model import Catalog, RelationKind
from bastion.masking import pgtypes
from bastion.masking.classes import SensitiveClass, Strategy
from bastion.masking.classifier import Action, CatalogColumn, Classification

from .conftest import SampleShop

EXTRA_DDL = """
CREATE DOMAIN email_address AS text CHECK (VALUE LIKE '%@%');
CREATE DOMAIN short_code AS varchar(12);
CREATE DOMAIN region_code AS short_code;
CREATE DOMAIN quantity AS integer CHECK (VALUE >= 0);
CREATE TABLE contacts (
    id integer PRIMARY KEY,
    backup_email email_address,
    contact email_address,
    region region_code,
    stock quantity
);

CREATE TABLE shrinking (keep_a integer, gone_ssn text, keep_b text);
ALTER TABLE shrinking DROP COLUMN gone_ssn;

CREATE TABLE events (id integer, occurred date, payload text, user_email text)
    PARTITION BY RANGE (occurred);
CREATE TABLE events_2024 PARTITION OF events
    FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2023 (junk integer, id integer, occurred date, payload text, user_email text);
ALTER TABLE events_2023 DROP COLUMN junk;
ALTER TABLE events ATTACH PARTITION events_2023 FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');

CREATE FOREIGN DATA WRAPPER catalog_test_fdw;
CREATE SERVER catalog_test_server FOREIGN DATA WRAPPER catalog_test_fdw;
CREATE FOREIGN TABLE remote_people (person_email text, visits integer)
    SERVER catalog_test_server;

CREATE SCHEMA reporting;

CREATE VIEW reporting.plain AS SELECT id, email, notes, birth_date FROM customers;
CREATE VIEW reporting.aliased AS SELECT c.email AS contact, c.phone AS p FROM customers AS c;
CREATE VIEW reporting.nested AS SELECT a.contact AS x FROM reporting.aliased AS a;
CREATE VIEW reporting.deeper AS SELECT x AS y FROM reporting.nested;
CREATE VIEW reporting.through_subquery AS
    SELECT s.e AS thing FROM (SELECT email AS e, id FROM customers) AS s;
CREATE VIEW reporting.through_cte AS
    WITH buyers AS (SELECT card_number AS card FROM customers) SELECT card AS c FROM buyers;
CREATE VIEW reporting.expressions AS
    SELECT lower(email) AS l, md5(email) AS h, length(email) AS n,
           substr(card_number, 1, 6) AS bin, count(*) OVER () AS total
    FROM customers;
CREATE VIEW reporting.harmless AS
    SELECT o.status, count(*) AS n, count(c.email) AS with_email, upper(o.status) AS s,
           sum(o.total) AS revenue
    FROM orders AS o JOIN customers AS c ON c.id = o.customer_id
    GROUP BY o.status;
CREATE VIEW reporting.tests AS
    SELECT c.id,
           EXISTS (SELECT 1 FROM orders AS o WHERE o.customer_id = c.id) AS has_orders,
           c.email IS NOT NULL AS has_email
    FROM customers AS c;
CREATE VIEW reporting.union_mixed AS
    SELECT email AS v FROM customers UNION SELECT status FROM orders;
CREATE VIEW reporting.union_same AS
    SELECT email FROM customers UNION ALL SELECT email FROM customers;
CREATE VIEW reporting.union_harmless AS
    SELECT city AS v FROM customers UNION SELECT status FROM orders;
CREATE VIEW reporting.whole_row AS SELECT row_to_json(c) AS doc FROM customers AS c;
CREATE VIEW reporting.set_returning AS SELECT unnest(ARRAY[email, phone]) AS v FROM customers;
CREATE VIEW reporting.lateral_function AS
    SELECT g.v FROM customers AS c, LATERAL unnest(ARRAY[c.email]) AS g(v);
CREATE VIEW reporting.correlated AS
    SELECT o.id, (SELECT c.email FROM customers AS c WHERE c.id = o.customer_id) AS buyer
    FROM orders AS o;
CREATE VIEW reporting.renamed_by_rule AS SELECT id::text AS ssn FROM customers;
CREATE VIEW reporting.system AS SELECT rolname, rolpassword FROM pg_roles;
CREATE VIEW reporting.recursive AS
    WITH RECURSIVE r(n, e) AS (
        SELECT 1, email FROM customers
        UNION ALL SELECT n + 1, e FROM r WHERE n < 3
    )
    SELECT n, e FROM r;
CREATE VIEW reporting.joined_using AS
    SELECT id, email FROM customers FULL JOIN orders USING (id);
CREATE VIEW reporting.over_partitions AS SELECT payload, user_email FROM events;

CREATE MATERIALIZED VIEW reporting.contacts_snapshot AS
    SELECT id, email AS addr, upper(city) AS town FROM customers;
"""


@pytest.fixture(scope="module")
def catalog(sample_shop: SampleShop) -> Catalog:
    sample_shop.execute(EXTRA_DDL)
    return load_catalog(sample_shop.conninfo_kwargs())


def columns_by_name(catalog: Catalog) -> dict[str, CatalogColumn]:
    return {column.qualified: column for column in catalog.columns}


def decisions(
    catalog: Catalog,
    labels: Mapping[str, str] | None = None,
    strategies: Mapping[SensitiveClass, Strategy] | None = None,
) -> dict[str, Classification]:
    result: CatalogClassification = classify_catalog(catalog, labels, strategies)
    return {
        column.qualified: result.classifications[(column.table_oid, column.attnum)]
        for column in catalog.columns
    }


def masked_as(decided: Classification) -> SensitiveClass | None:
    return decided.sensitive_class if decided.action is Action.MASK else None


# The demo shop, as docs/masking.md describes it.


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        ("public.customers.full_name", SensitiveClass.PERSON_NAME),
        ("public.customers.email", SensitiveClass.EMAIL),
        ("public.customers.phone", SensitiveClass.PHONE),
        ("public.customers.card_number", SensitiveClass.CARD_NUMBER),
        ("public.customers.ssn", SensitiveClass.SSN),
        ("public.customers.birth_date", SensitiveClass.BIRTH_DATE),
        ("public.api_credentials.token", SensitiveClass.TOKEN),
    ],
)
def test_sample_sensitive_columns_are_masked(
    catalog: Catalog, column: str, expected: SensitiveClass
) -> None:
    assert masked_as(decisions(catalog)[column]) is expected


@pytest.mark.parametrize(
    "column",
    [
        "public.customers.city",
        "public.customers.notes",
        "public.orders.status",
        "public.payments.card_last4",
        "public.payments.method",
        "public.api_credentials.service",
        "public.api_credentials.created_by",
    ],
)
def test_sample_free_text_is_scanned(catalog: Catalog, column: str) -> None:
    assert decisions(catalog)[column].action is Action.SCAN


@pytest.mark.parametrize(
    "column",
    [
        "public.customers.id",
        "public.orders.created_at",
        "public.orders.total",
        "public.payments.amount",
        "public.payments.order_id",
    ],
)
def test_sample_numbers_and_times_pass(catalog: Catalog, column: str) -> None:
    assert decisions(catalog)[column].action is Action.PASS


def test_keys_are_what_row_description_reports(catalog: Catalog, sample_shop: SampleShop) -> None:
    email = columns_by_name(catalog)["public.customers.email"]
    assert email.table_oid == sample_shop.oid("public.customers")
    assert email.attnum == 3  # id, full_name, email
    assert email.type_oid == pgtypes.TEXT
    assert catalog.relations[email.table_oid].kind is RelationKind.TABLE


def test_system_schemas_and_system_columns_are_left_out(catalog: Catalog) -> None:
    schemas = {column.schema for column in catalog.columns}
    assert schemas == {"public", "reporting"}
    assert all(column.attnum > 0 for column in catalog.columns)
    assert not [c for c in catalog.columns if c.column in ("ctid", "xmin", "tableoid")]


# Domains, dropped columns, partitions, foreign tables.


def test_domains_resolve_to_their_base_type(catalog: Catalog) -> None:
    by_name = columns_by_name(catalog)
    contact = by_name["public.contacts.contact"]
    assert (contact.type_oid, contact.type_name) == (pgtypes.TEXT, "text")
    region = by_name["public.contacts.region"]  # a domain over a domain over varchar(12)
    assert (region.type_oid, region.type_name) == (pgtypes.VARCHAR, "character varying(12)")
    stock = by_name["public.contacts.stock"]
    assert (stock.type_oid, stock.type_name) == (pgtypes.INT4, "integer")
    decided = decisions(catalog)
    assert masked_as(decided["public.contacts.backup_email"]) is SensitiveClass.EMAIL
    assert decided["public.contacts.contact"].action is Action.SCAN
    assert decided["public.contacts.stock"].action is Action.PASS


def test_a_dropped_column_is_absent(catalog: Catalog) -> None:
    shrinking = [c for c in catalog.columns if c.table == "shrinking"]
    assert [(c.column, c.attnum) for c in shrinking] == [("keep_a", 1), ("keep_b", 3)]
    assert not [c for c in catalog.columns if "dropped" in c.column or c.column == "gone_ssn"]


def test_partitions_follow_their_partitioned_table(catalog: Catalog) -> None:
    by_name = columns_by_name(catalog)
    parent = by_name["public.events.payload"]
    old = by_name["public.events_2023.payload"]
    assert catalog.relations[parent.table_oid].kind is RelationKind.PARTITIONED_TABLE
    assert catalog.relations[old.table_oid].parent_oid == parent.table_oid
    assert old.attnum == parent.attnum + 1  # the dropped `junk` column still takes a number

    decided = decisions(catalog, {"public.events.payload": "api_key"})
    for table in ("events", "events_2024", "events_2023"):
        assert masked_as(decided[f"public.{table}.payload"]) is SensitiveClass.API_KEY, table
        assert masked_as(decided[f"public.{table}.user_email"]) is SensitiveClass.EMAIL, table
    assert decided["public.events_2023.payload"].reason.startswith("partition of public.events")
    # A partition's own label still wins over its parent's.
    own = decisions(
        catalog, {"public.events.payload": "api_key", "public.events_2023.payload": "none"}
    )
    assert own["public.events_2023.payload"].action is Action.PASS
    assert masked_as(own["public.events_2024.payload"]) is SensitiveClass.API_KEY


def test_foreign_tables_are_classified(catalog: Catalog) -> None:
    column = columns_by_name(catalog)["public.remote_people.person_email"]
    assert catalog.relations[column.table_oid].kind is RelationKind.FOREIGN_TABLE
    assert (
        masked_as(decisions(catalog)["public.remote_people.person_email"]) is SensitiveClass.EMAIL
    )


# Labels.


def test_labels_override_in_both_directions(catalog: Catalog) -> None:
    labels = {
        "public.customers.email": "none",
        "public.customers.notes": "email:hash",
        "public.orders.status": "ssn",
        "public.customers.id": "scan",  # an integer cannot hold text: passes, saying so
    }
    decided = decisions(catalog, labels, {SensitiveClass.SSN: Strategy.PARTIAL})
    assert decided["public.customers.email"].action is Action.PASS
    assert decided["public.customers.email"].reason.startswith("label:")
    notes = decided["public.customers.notes"]
    assert notes == Classification.masked(SensitiveClass.EMAIL, Strategy.HASH, "label: email:hash")
    status = decided["public.orders.status"]
    assert (status.sensitive_class, status.strategy) == (SensitiveClass.SSN, Strategy.PARTIAL)
    assert decided["public.customers.id"].action is Action.PASS
    # Views read through the labelled columns.
    assert decided["reporting.plain.email"].action is Action.PASS
    assert masked_as(decided["reporting.plain.notes"]) is SensitiveClass.EMAIL


def test_a_label_on_a_view_column_wins_over_its_lineage(catalog: Catalog) -> None:
    labels = {"reporting.aliased.contact": "none", "reporting.harmless.s": "secret"}
    decided = decisions(catalog, labels)
    assert decided["reporting.aliased.contact"].action is Action.PASS
    # ... and views over it inherit the label.
    assert decided["reporting.nested.x"].action is Action.PASS
    assert masked_as(decided["reporting.harmless.s"]) is SensitiveClass.SECRET


def test_strategies_override_class_defaults(catalog: Catalog) -> None:
    decided = decisions(catalog, strategies={SensitiveClass.EMAIL: Strategy.HASH})
    assert decided["public.customers.email"].strategy is Strategy.HASH
    assert decided["reporting.aliased.contact"].strategy is Strategy.HASH
    assert decided["public.customers.phone"].strategy is Strategy.PARTIAL


def test_unmatched_labels_are_reported(catalog: Catalog) -> None:
    labels = {"public.customers.emial": "email", "reporting.plain.email": "none"}
    assert classify_catalog(catalog, labels).unmatched_labels == ("public.customers.emial",)


# Views.


def test_a_plain_view_inherits_each_column(catalog: Catalog) -> None:
    decided = decisions(catalog)
    email = decided["reporting.plain.email"]
    assert masked_as(email) is SensitiveClass.EMAIL
    assert email.reason.startswith("view column of public.customers.email")
    assert decided["reporting.plain.notes"].action is Action.SCAN
    assert decided["reporting.plain.id"].action is Action.PASS
    assert masked_as(decided["reporting.plain.birth_date"]) is SensitiveClass.BIRTH_DATE
    assert catalog.relations[columns_by_name(catalog)["reporting.plain.email"].table_oid].kind is (
        RelationKind.VIEW
    )


def test_aliases_subqueries_ctes_and_nested_views_are_followed(catalog: Catalog) -> None:
    decided = decisions(catalog)
    assert masked_as(decided["reporting.aliased.contact"]) is SensitiveClass.EMAIL
    assert masked_as(decided["reporting.aliased.p"]) is SensitiveClass.PHONE
    assert masked_as(decided["reporting.nested.x"]) is SensitiveClass.EMAIL
    assert decided["reporting.nested.x"].reason.startswith(
        "view column of reporting.aliased.contact"
    )
    assert masked_as(decided["reporting.deeper.y"]) is SensitiveClass.EMAIL
    assert masked_as(decided["reporting.through_subquery.thing"]) is SensitiveClass.EMAIL
    assert masked_as(decided["reporting.through_cte.c"]) is SensitiveClass.CARD_NUMBER


@pytest.mark.parametrize("column", ["l", "h", "n"])
def test_expressions_over_email_are_masked_as_email(catalog: Catalog, column: str) -> None:
    decided = decisions(catalog)[f"reporting.expressions.{column}"]
    assert masked_as(decided) is SensitiveClass.EMAIL
    assert decided.reason == "computed from public.customers.email"


def test_expressions_take_their_sources_strategy(catalog: Catalog) -> None:
    decided = decisions(catalog)
    assert masked_as(decided["reporting.expressions.bin"]) is SensitiveClass.CARD_NUMBER
    assert decided["reporting.expressions.bin"].strategy is Strategy.PARTIAL
    assert decided["reporting.expressions.total"].action is Action.PASS  # count(*) OVER ()


def test_counts_and_harmless_expressions_pass_or_scan(catalog: Catalog) -> None:
    decided = decisions(catalog)
    assert decided["reporting.harmless.status"].action is Action.SCAN
    assert decided["reporting.harmless.n"].action is Action.PASS
    assert decided["reporting.harmless.with_email"].action is Action.PASS  # count(email)
    assert decided["reporting.harmless.s"].action is Action.SCAN  # upper(status): text
    assert decided["reporting.harmless.revenue"].action is Action.PASS
    assert decided["reporting.tests.has_orders"].action is Action.PASS  # EXISTS
    assert decided["reporting.tests.has_email"].action is Action.PASS  # IS NOT NULL


def test_unions(catalog: Catalog) -> None:
    decided = decisions(catalog)
    mixed = decided["reporting.union_mixed.v"]
    assert masked_as(mixed) is SensitiveClass.EMAIL
    assert mixed.reason.startswith("computed from public.customers.email")
    same = decided["reporting.union_same.email"]
    assert same.reason.startswith("view column of public.customers.email")
    assert decided["reporting.union_harmless.v"].action is Action.SCAN


def test_functions_over_rows_and_set_returning_functions(catalog: Catalog) -> None:
    decided = decisions(catalog)
    # Every column of the row goes in: the strategy that shows least (redact) is chosen.
    whole_row = decided["reporting.whole_row.doc"]
    assert whole_row.action is Action.MASK
    assert whole_row.strategy is Strategy.REDACT
    assert masked_as(decided["reporting.set_returning.v"]) is SensitiveClass.EMAIL
    assert masked_as(decided["reporting.lateral_function.v"]) is SensitiveClass.EMAIL
    assert masked_as(decided["reporting.correlated.buyer"]) is SensitiveClass.EMAIL
    assert decided["reporting.correlated.id"].action is Action.PASS


def test_a_view_column_named_like_secret_data_is_masked_whatever_it_holds(
    catalog: Catalog,
) -> None:
    decided = decisions(catalog)["reporting.renamed_by_rule.ssn"]
    assert masked_as(decided) is SensitiveClass.SSN
    assert decided.reason.startswith("name rule")


def test_columns_of_relations_outside_the_catalog_are_scanned(catalog: Catalog) -> None:
    decided = decisions(catalog)
    rolname = decided["reporting.system.rolname"]
    assert rolname.action is Action.SCAN
    assert rolname.reason == "origin not fully resolved: content scan"
    assert masked_as(decided["reporting.system.rolpassword"]) is SensitiveClass.PASSWORD


def test_recursive_ctes_and_full_join_using(catalog: Catalog) -> None:
    decided = decisions(catalog)
    assert masked_as(decided["reporting.recursive.e"]) is SensitiveClass.EMAIL
    assert decided["reporting.recursive.n"].action is Action.PASS
    assert masked_as(decided["reporting.joined_using.email"]) is SensitiveClass.EMAIL
    assert decided["reporting.joined_using.id"].action is Action.PASS


def test_views_over_partitioned_tables_carry_their_labels(catalog: Catalog) -> None:
    decided = decisions(catalog, {"public.events.payload": "token"})
    assert masked_as(decided["reporting.over_partitions.payload"]) is SensitiveClass.TOKEN
    assert masked_as(decided["reporting.over_partitions.user_email"]) is SensitiveClass.EMAIL


def test_materialized_views_are_followed_like_views(catalog: Catalog) -> None:
    by_name = columns_by_name(catalog)
    relation = catalog.relations[by_name["reporting.contacts_snapshot.addr"].table_oid]
    assert relation.kind is RelationKind.MATERIALIZED_VIEW
    assert relation.definition is not None and "public.customers" in relation.definition
    decided = decisions(catalog)
    assert masked_as(decided["reporting.contacts_snapshot.addr"]) is SensitiveClass.EMAIL
    assert decided["reporting.contacts_snapshot.town"].action is Action.SCAN
    assert decided["reporting.contacts_snapshot.id"].action is Action.PASS


def test_view_definitions_are_schema_qualified(catalog: Catalog) -> None:
    plain = columns_by_name(catalog)["reporting.plain.email"]
    definition = catalog.relations[plain.table_oid].definition
    assert definition is not None and "FROM public.customers" in definition

"""The demo shop sample: deterministic generation, realistic secrets, and loading it for real."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import astuple, fields

import psycopg
import pytest
from psycopg import sql

from bastion.demo.pgserver import ThrowawayPostgres
from bastion.demo.sample import (
    SAMPLE_DDL,
    SAMPLE_TABLES,
    ApiCredential,
    Customer,
    Order,
    Payment,
    SampleSummary,
    generate_sample,
    load_sample,
    luhn_valid,
)
from support.servers import PostgresEndpoint, throwaway_postgres

SECRET_IN_NOTE = re.compile(
    r"sk_live_[A-Za-z0-9]{24}|AKIA[A-Z2-7]{16}|ghp_[A-Za-z0-9]{36}|[a-z0-9.]+@[a-z0-9.-]+\.[a-z]+"
)
SSN = re.compile(r"^(?P<area>\d{3})-(?P<group>\d{2})-(?P<serial>\d{4})$")
ROW_TYPES = {
    "customers": Customer,
    "orders": Order,
    "payments": Payment,
    "api_credentials": ApiCredential,
}


@pytest.fixture(scope="module")
def server() -> Iterator[ThrowawayPostgres]:
    with throwaway_postgres() as server:
        yield server


@pytest.fixture(scope="module")
def shop(server: ThrowawayPostgres) -> SampleSummary:
    return load_sample(server.admin_dsn(), "shop")


def _fingerprint(conninfo: str) -> dict[str, str]:
    """An md5 of every table's full contents, in id order."""
    digests = {}
    with psycopg.connect(conninfo) as conn:
        for table in SAMPLE_TABLES:
            query = sql.SQL("SELECT md5(string_agg(t::text, '|' ORDER BY id)) FROM {} t")
            row = conn.execute(query.format(sql.Identifier(table))).fetchone()
            assert row is not None
            digests[table] = row[0]
    return digests


# -- generation, no server needed ------------------------------------------------------------


def test_same_seed_same_data_other_seed_other_data() -> None:
    assert generate_sample(120, seed=7) == generate_sample(120, seed=7)
    other = generate_sample(120, seed=8)
    assert other.customers[0] != generate_sample(120, seed=7).customers[0]


def test_luhn_reference_values() -> None:
    assert luhn_valid("79927398713")
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
    assert not luhn_valid("41111111111x1111")


def test_cards_are_luhn_valid_test_style_numbers() -> None:
    cards = [c.card_number for c in generate_sample(400).customers]
    assert all(luhn_valid(card) for card in cards)
    for card in cards:
        if card.startswith(("34", "37")):
            assert len(card) == 15
        else:
            assert card.startswith(("4", "51", "52", "53", "54", "55", "6011"))
            assert len(card) == 16
    assert len({card[0] for card in cards}) >= 3  # a mix of brands, not one prefix


def test_ssns_use_issuable_ranges_only() -> None:
    for customer in generate_sample(400).customers:
        parts = SSN.match(customer.ssn)
        assert parts, customer.ssn
        area = int(parts["area"])
        assert 1 <= area <= 899 and area != 666
        assert parts["group"] != "00" and parts["serial"] != "0000"


def test_about_one_note_in_eight_hides_a_secret() -> None:
    data = generate_sample(400)
    assert len(data.hidden_in_notes) == 50
    leaking = {c.id for c in data.customers if c.notes and SECRET_IN_NOTE.search(c.notes)}
    assert leaking == set(data.hidden_in_notes)
    for customer_id, hidden in data.hidden_in_notes.items():
        assert hidden in (data.customers[customer_id - 1].notes or "")
    for marker in ("sk_live_", "AKIA", "ghp_", "@"):
        assert any(marker in value for value in data.hidden_in_notes.values()), marker


def test_even_a_tiny_sample_hides_a_key() -> None:
    data = generate_sample(1)
    assert len(data.hidden_in_notes) == 1
    assert "@" not in data.hidden_in_notes[1]


def test_rows_hang_together() -> None:
    data = generate_sample(200)
    emails = [c.email for c in data.customers]
    assert len(set(emails)) == len(emails)
    assert all(re.fullmatch(r"\+1 \(\d{3}\) 555-01\d{2}", c.phone) for c in data.customers)
    orders = {o.id: o for o in data.orders}
    assert all(1 <= o.customer_id <= 200 for o in data.orders)
    assert [o.created_at for o in data.orders] == sorted(o.created_at for o in data.orders)
    for payment in data.payments:
        order = orders[payment.order_id]
        assert order.status in {"paid", "shipped", "delivered", "refunded"}
        assert payment.amount == order.total and payment.paid_at > order.created_at
        card = data.customers[order.customer_id - 1].card_number
        expected_last4 = None if payment.method == "bank_transfer" else card[-4:]
        assert payment.card_last4 == expected_last4
    tokens = [credential.token for credential in data.api_credentials]
    assert all(len(token) >= 20 for token in tokens)


def test_an_empty_sample_is_refused() -> None:
    with pytest.raises(ValueError):
        generate_sample(0)


# -- loaded into a real server ---------------------------------------------------------------


def test_row_counts_match_the_generated_data(
    server: ThrowawayPostgres, shop: SampleSummary
) -> None:
    data = generate_sample(200, seed=7)
    expected = {table: len(getattr(data, table)) for table in SAMPLE_TABLES}
    assert dict(shop.row_counts) == expected
    assert expected["customers"] == 200 and expected["orders"] > 200
    with psycopg.connect(server.admin_dsn("shop")) as conn:
        for table in SAMPLE_TABLES:
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            assert conn.execute(query).fetchone() == (expected[table],)


def test_known_sensitive_values_are_stored_raw(
    server: ThrowawayPostgres, shop: SampleSummary
) -> None:
    first = shop.first_customer
    with psycopg.connect(server.admin_dsn("shop")) as conn:
        row = conn.execute("SELECT * FROM customers WHERE id = 1").fetchone()
        assert row == astuple(first)
        note = conn.execute(
            "SELECT notes FROM customers WHERE id = %s", [shop.secret_note_customer_id]
        ).fetchone()
        tokens = [t for (t,) in conn.execute("SELECT token FROM api_credentials ORDER BY id")]
    assert note == (shop.secret_note,)
    assert shop.hidden_secret in shop.secret_note
    assert re.fullmatch(r"sk_live_\w+|AKIA\w+|ghp_\w+", shop.hidden_secret)
    assert tuple(tokens) == shop.api_tokens
    assert {first.email, first.card_number, first.ssn, shop.hidden_secret} <= set(
        shop.sensitive_values
    )


def test_notes_hiding_secrets_are_found_in_the_database(
    server: ThrowawayPostgres, shop: SampleSummary
) -> None:
    with psycopg.connect(server.admin_dsn("shop")) as conn:
        rows = conn.execute("SELECT id, notes FROM customers ORDER BY id").fetchall()
        cards = [card for (card,) in conn.execute("SELECT card_number FROM customers")]
    leaking = tuple(cid for cid, notes in rows if notes and SECRET_IN_NOTE.search(notes))
    assert leaking == shop.secret_note_ids
    assert 200 / 12 < len(leaking) < 200 / 5
    assert all(luhn_valid(card) for card in cards)


def test_identities_continue_after_the_loaded_rows(
    server: ThrowawayPostgres, shop: SampleSummary
) -> None:
    with psycopg.connect(server.admin_dsn("shop")) as conn:
        row = conn.execute(
            "INSERT INTO api_credentials (service, token, created_by, created_at)"
            " VALUES ('test', 'x', 'test', now()) RETURNING id"
        ).fetchone()
        conn.rollback()
    assert row == (shop.row_counts["api_credentials"] + 1,)


def test_loading_is_deterministic_and_reloading_replaces(
    server: ThrowawayPostgres, shop: SampleSummary
) -> None:
    again = load_sample(server.admin_dsn(), "shop_again")
    assert again.first_customer == shop.first_customer
    assert again.api_tokens == shop.api_tokens
    assert _fingerprint(server.admin_dsn("shop_again")) == _fingerprint(server.admin_dsn("shop"))

    # Reloading drops the old database even while a client is connected to it.
    with psycopg.connect(server.admin_dsn("shop_again"), autocommit=True) as idle:
        other = load_sample(server.admin_dsn(), "shop_again", customers=30, seed=99)
        with pytest.raises(psycopg.OperationalError):
            idle.execute("SELECT 1")
    assert other.row_counts["customers"] == 30
    assert other.first_customer != shop.first_customer
    assert _fingerprint(server.admin_dsn("shop_again")) != _fingerprint(server.admin_dsn("shop"))


def test_exported_ddl_recreates_the_schema(server: ThrowawayPostgres, shop: SampleSummary) -> None:
    server.create_database("ddl_only")
    with psycopg.connect(server.admin_dsn("ddl_only")) as conn:
        conn.execute(SAMPLE_DDL)
        for table, row_type in ROW_TYPES.items():
            columns = conn.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_name = %s ORDER BY ordinal_position",
                [table],
            ).fetchall()
            assert [name for (name,) in columns] == [field.name for field in fields(row_type)]


def test_load_into_the_shared_test_server(postgres_endpoint: PostgresEndpoint) -> None:
    database = f"bastion_sample_{uuid.uuid4().hex[:12]}"
    try:
        summary = load_sample(postgres_endpoint.admin_conninfo, database, customers=40, seed=3)
        assert summary.database == database
        assert summary.row_counts["customers"] == 40
        with psycopg.connect(postgres_endpoint.dsn(database)) as conn:
            row = conn.execute("SELECT email, ssn FROM customers WHERE id = 1").fetchone()
        assert row == (summary.first_customer.email, summary.first_customer.ssn)
        assert summary.first_customer == generate_sample(40, seed=3).customers[0]
    finally:
        with psycopg.connect(postgres_endpoint.admin_conninfo, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
            )

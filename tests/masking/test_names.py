"""Column-name rules: positives in every naming style, and the names they must leave alone."""

from __future__ import annotations

import pytest

from bastion.masking import pgtypes
from bastion.masking.classes import SensitiveClass as C
from bastion.masking.names import classify_name, split_words

T = pgtypes.TEXT

POSITIVE: list[tuple[str, int | None, C]] = [
    ("email", T, C.EMAIL),
    ("customer_email", T, C.EMAIL),
    ("EmailAddress", T, C.EMAIL),
    ("e_mail", T, C.EMAIL),
    ("E-Mail", T, C.EMAIL),
    ("eMail", T, C.EMAIL),
    ("contactEmail", T, C.EMAIL),
    ("useremail", T, C.EMAIL),
    ("email_address", T, C.EMAIL),
    ("EMAIL_ADDR", pgtypes.VARCHAR, C.EMAIL),
    ("billing-email", T, C.EMAIL),
    ("phone", T, C.PHONE),
    ("phone_number", T, C.PHONE),
    ("PhoneNumber", T, C.PHONE),
    ("mobile", T, C.PHONE),
    ("mobile_no", T, C.PHONE),
    ("tel", T, C.PHONE),
    ("telephone", T, C.PHONE),
    ("cellphone", T, C.PHONE),
    ("fax", T, C.PHONE),
    ("phone", pgtypes.INT8, C.PHONE),
    ("ssn", T, C.SSN),
    ("SSN", pgtypes.BPCHAR, C.SSN),
    ("social_security_number", T, C.SSN),
    ("SocialSecurityNumber", T, C.SSN),
    ("ssn", pgtypes.INT4, C.SSN),
    ("national_id", T, C.NATIONAL_ID),
    ("nin", T, C.NATIONAL_ID),
    ("passport_number", T, C.NATIONAL_ID),
    ("tax_id", T, C.TAX_ID),
    ("TaxID", T, C.TAX_ID),
    ("tin", T, C.TAX_ID),
    ("vat_number", T, C.TAX_ID),
    ("card_number", T, C.CARD_NUMBER),
    ("cardNumber", T, C.CARD_NUMBER),
    ("credit_card", T, C.CARD_NUMBER),
    ("CreditCardNumber", T, C.CARD_NUMBER),
    ("creditcard", T, C.CARD_NUMBER),
    ("cc_number", T, C.CARD_NUMBER),
    ("ccnum", T, C.CARD_NUMBER),
    ("pan", T, C.CARD_NUMBER),
    ("card_number", pgtypes.NUMERIC, C.CARD_NUMBER),
    ("cvv", T, C.CARD_SECURITY_CODE),
    ("cvv2", T, C.CARD_SECURITY_CODE),
    ("iban", T, C.IBAN),
    ("IBAN", pgtypes.VARCHAR, C.IBAN),
    ("account_number", T, C.BANK_ACCOUNT),
    ("acct_no", T, C.BANK_ACCOUNT),
    ("bank_account", pgtypes.INT8, C.BANK_ACCOUNT),
    ("password", T, C.PASSWORD),
    ("passwd", T, C.PASSWORD),
    ("pwd", T, C.PASSWORD),
    ("password_hash", T, C.PASSWORD),
    ("hashed_password", pgtypes.BYTEA, C.PASSWORD),
    ("encrypted_password", T, C.PASSWORD),
    ("secret", T, C.SECRET),
    ("client_secret", T, C.SECRET),
    ("totp_secret", T, C.SECRET),
    ("credentials", pgtypes.JSONB, C.SECRET),
    ("token", T, C.TOKEN),
    ("access_token", T, C.TOKEN),
    ("refreshToken", T, C.TOKEN),
    ("password_reset_token", T, C.TOKEN),
    ("email_token", T, C.TOKEN),
    ("session_token", pgtypes.UUID, C.TOKEN),
    ("api_key", T, C.API_KEY),
    ("apikey", T, C.API_KEY),
    ("ApiKey", T, C.API_KEY),
    ("x-api-key", T, C.API_KEY),
    ("private_key", T, C.PRIVATE_KEY),
    ("privateKey", T, C.PRIVATE_KEY),
    ("jwt", T, C.JWT),
    ("id_token", T, C.JWT),
    ("dob", pgtypes.DATE, C.BIRTH_DATE),
    ("birth_date", pgtypes.DATE, C.BIRTH_DATE),
    ("date_of_birth", pgtypes.DATE, C.BIRTH_DATE),
    ("DateOfBirth", pgtypes.TIMESTAMP, C.BIRTH_DATE),
    ("birthdate", T, C.BIRTH_DATE),
    ("birthday", pgtypes.DATE, C.BIRTH_DATE),
    ("address", T, C.ADDRESS),
    ("street", T, C.ADDRESS),
    ("billing_address", T, C.ADDRESS),
    ("address_line1", T, C.ADDRESS),
    ("addr", T, C.ADDRESS),
    ("shipping_address", pgtypes.JSONB, C.ADDRESS),
    ("zip", T, C.POSTAL_CODE),
    ("zip_code", T, C.POSTAL_CODE),
    ("postcode", T, C.POSTAL_CODE),
    ("PostalCode", T, C.POSTAL_CODE),
    ("first_name", T, C.PERSON_NAME),
    ("firstName", T, C.PERSON_NAME),
    ("last_name", T, C.PERSON_NAME),
    ("LastName", T, C.PERSON_NAME),
    ("lastname", T, C.PERSON_NAME),
    ("surname", T, C.PERSON_NAME),
    ("given_name", T, C.PERSON_NAME),
    ("full_name", T, C.PERSON_NAME),
    ("fullname", T, C.PERSON_NAME),
    ("cardholder_name", T, C.PERSON_NAME),
    ("ip", pgtypes.INET, C.IP_ADDRESS),
    ("ip_address", T, C.IP_ADDRESS),
    ("IPAddress", pgtypes.INET, C.IP_ADDRESS),
    ("client_ip", pgtypes.INET, C.IP_ADDRESS),
    ("last_login_ip", T, C.IP_ADDRESS),
    ("remote_addr", pgtypes.INET, C.IP_ADDRESS),
    ("ipv6", pgtypes.INET, C.IP_ADDRESS),
    ("email", None, C.EMAIL),  # type unknown: the name alone decides
]

NEGATIVE: list[tuple[str, int | None]] = [
    ("id", pgtypes.INT4),
    ("created_at", pgtypes.TIMESTAMPTZ),
    ("status", T),
    ("total", pgtypes.NUMERIC),
    ("city", T),
    ("country", T),
    ("state", T),
    ("username", T),
    ("notes", T),
    ("emailed_at", pgtypes.TIMESTAMPTZ),
    ("emailed_at", T),  # `emailed` is not `email`
    ("email_verified", pgtypes.BOOL),
    ("email_verified", T),
    ("is_email_confirmed", pgtypes.BOOL),
    ("email_count", pgtypes.INT4),
    ("email_sent_at", pgtypes.TIMESTAMPTZ),
    ("email", pgtypes.TIMESTAMPTZ),  # a timestamp is never an e-mail
    ("email", pgtypes.BOOL),
    ("token_count", pgtypes.INT4),
    ("token_count", T),
    ("max_tokens", pgtypes.INT4),
    ("tokens_used", pgtypes.INT8),
    ("token_type", T),
    ("token_expires_at", pgtypes.TIMESTAMPTZ),
    ("password_changed_at", pgtypes.TIMESTAMPTZ),
    ("has_password", pgtypes.BOOL),
    ("password_policy", T),
    ("card_last4", T),
    ("card_brand", T),
    ("card_type", T),
    ("card_id", pgtypes.INT4),
    ("card_exp_month", pgtypes.INT2),
    ("phone_verified", pgtypes.BOOL),
    ("phone_country_code", T),
    ("mac_address", T),
    ("public_key", T),
    ("ssn", pgtypes.BOOL),
    ("birth_date", pgtypes.INT4),
    ("name", T),  # not a person without a table of people
    ("product_name", T),
    ("company_name", T),
    ("file_name", T),
    ("table_name", pgtypes.NAME),
    ("account_id", pgtypes.INT8),
    ("account_type", T),
    ("zip", pgtypes.BOOL),
    ("customer_id", pgtypes.INT4),
    ("order_id", pgtypes.INT4),
    ("description", T),
    ("ip", pgtypes.INT4),
    ("cell_count", pgtypes.INT4),
    ("api_key_id", pgtypes.INT4),
    ("api_key_prefix", T),
]


@pytest.mark.parametrize(("name", "type_oid", "expected"), POSITIVE)
def test_name_rules_find_the_class(name: str, type_oid: int | None, expected: C) -> None:
    match = classify_name(name, type_oid)
    assert match is not None, name
    assert match.sensitive_class is expected
    assert expected.value in match.reason and name in match.reason


@pytest.mark.parametrize(("name", "type_oid"), NEGATIVE)
def test_names_that_are_not_sensitive(name: str, type_oid: int | None) -> None:
    assert classify_name(name, type_oid) is None


@pytest.mark.parametrize("table", ["customers", "users", "people", "Employees", "patient"])
def test_a_bare_name_is_a_person_in_a_table_of_people(table: str) -> None:
    match = classify_name("name", T, table=table)
    assert match is not None and match.sensitive_class is C.PERSON_NAME
    assert table in match.reason


@pytest.mark.parametrize("table", ["products", "services", "categories", None])
def test_a_bare_name_elsewhere_is_not_a_person(table: str | None) -> None:
    assert classify_name("name", T, table=table) is None


def test_a_bare_name_of_a_non_text_type_is_not_a_person() -> None:
    assert classify_name("name", pgtypes.INT4, table="customers") is None


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("customer_email", ["customer", "email"]),
        ("EmailAddress", ["email", "address"]),
        ("customerEMailAddress_2", ["customer", "e", "mail", "address", "2"]),
        ("APIKey", ["api", "key"]),
        ("x-api-key", ["x", "api", "key"]),
        ("address line1", ["address", "line", "1"]),
        ("", []),
        ("__", []),
    ],
)
def test_split_words(name: str, words: list[str]) -> None:
    assert split_words(name) == words


def test_the_demo_schema_is_classified_as_documented() -> None:
    """The sample shop's columns (src/bastion/demo/sample.py) with their real types."""
    schema = {
        ("customers", "id"): (pgtypes.INT4, None),
        ("customers", "full_name"): (T, C.PERSON_NAME),
        ("customers", "email"): (T, C.EMAIL),
        ("customers", "phone"): (T, C.PHONE),
        ("customers", "card_number"): (T, C.CARD_NUMBER),
        ("customers", "ssn"): (T, C.SSN),
        ("customers", "birth_date"): (pgtypes.DATE, C.BIRTH_DATE),
        ("customers", "city"): (T, None),
        ("customers", "notes"): (T, None),
        ("orders", "customer_id"): (pgtypes.INT4, None),
        ("orders", "created_at"): (pgtypes.TIMESTAMPTZ, None),
        ("orders", "status"): (T, None),
        ("orders", "total"): (pgtypes.NUMERIC, None),
        ("payments", "card_last4"): (T, None),
        ("payments", "method"): (T, None),
        ("api_credentials", "service"): (T, None),
        ("api_credentials", "token"): (T, C.TOKEN),
        ("api_credentials", "created_by"): (T, None),
    }
    for (table, name), (type_oid, expected) in schema.items():
        match = classify_name(name, type_oid, table=table)
        assert (match.sensitive_class if match else None) is expected, (table, name)

"""The precise checks behind the detectors, on known-good and known-bad values."""

from __future__ import annotations

import pytest

from bastion.demo.sample import generate_sample
from bastion.masking.validators import (
    card_number_valid,
    email_valid,
    iban_valid,
    jwt_header_valid,
    luhn_valid,
    nanp_valid,
    ssn_valid,
)


@pytest.mark.parametrize(
    "number",
    [
        "4111111111111111",
        "4242424242424242",
        "5555555555554444",
        "2223003122003222",
        "378282246310005",
        "371449635398431",
        "6011111111111117",
        "3056930009020004",
        "3566002020360505",
        "6200000000000005",
        "4000056655665556",
        "4222222222222",
    ],
)
def test_published_test_card_numbers_are_cards(number: str) -> None:
    assert card_number_valid(number.encode())


@pytest.mark.parametrize(
    "number",
    [
        "4111111111111112",  # Luhn fails
        "0000000000000000",  # passes Luhn, all one digit
        "1234567812345670",  # passes Luhn, no issuer starts with 1
        "9111111111111111",
        "378282246310005000",  # Amex prefix, wrong length
        "42424242424",  # too short
        "42424242424242424242",  # too long
        "4242-4242-4242-4242",  # separators are the detector's business, not the validator's
    ],
)
def test_not_card_numbers(number: str) -> None:
    assert not card_number_valid(number.encode())


def test_luhn() -> None:
    assert luhn_valid(b"79927398713")
    assert not luhn_valid(b"79927398710")


def test_every_demo_card_is_valid() -> None:
    for customer in generate_sample(200).customers:
        assert card_number_valid(customer.card_number.encode()), customer.card_number


@pytest.mark.parametrize(
    ("ssn", "valid"),
    [
        ("123-45-6789", True),
        ("001-01-0001", True),
        ("899-99-9999", True),
        ("000-45-6789", False),
        ("666-45-6789", False),
        ("900-45-6789", False),
        ("999-45-6789", False),
        ("123-00-6789", False),
        ("123-45-0000", False),
        ("078-05-1120", False),  # the Woolworth wallet card number
    ],
)
def test_ssn_ranges(ssn: str, valid: bool) -> None:
    area, group, serial = (part.encode() for part in ssn.split("-"))
    assert ssn_valid(area, group, serial) is valid


def test_every_demo_ssn_is_valid() -> None:
    for customer in generate_sample(200).customers:
        area, group, serial = (part.encode() for part in customer.ssn.split("-"))
        assert ssn_valid(area, group, serial), customer.ssn


@pytest.mark.parametrize(
    "iban",
    [
        "DE89370400440532013000",
        "GB82WEST12345698765432",
        "FR1420041010050500013M02606",
        "NL91ABNA0417164300",
        "BE68539007547034",
        "NO9386011117947",
        "CH9300762011623852957",
    ],
)
def test_valid_ibans(iban: str) -> None:
    assert iban_valid(iban.encode())


@pytest.mark.parametrize(
    "iban",
    [
        "DE89370400440532013001",  # check digits wrong
        "DE8937040044053201300",  # one short for Germany
        "XX89370400440532013000",  # no such country
        "de89370400440532013000",  # lower case is not how IBANs are printed
        "GB82WEST1234569876543A",
    ],
)
def test_invalid_ibans(iban: str) -> None:
    assert not iban_valid(iban.encode())


def test_jwt_headers() -> None:
    assert jwt_header_valid(b"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9")
    assert jwt_header_valid(b"eyJhbGciOiJub25lIn0")  # {"alg":"none"} is still a JWT
    assert not jwt_header_valid(b"eyJ0eXAiOiJKV1QifQ")  # {"typ":"JWT"}: no alg
    assert not jwt_header_valid(b"eyJhbGciOiJIUzI1NiIsInR5cCI")  # truncated JSON
    assert not jwt_header_valid(b"eyJ!!!")


@pytest.mark.parametrize(
    ("address", "valid"),
    [
        ("ava.garcia1@example.com", True),
        ("a+tag@mail.example.org", True),
        ("x@sub.domain.co.uk", True),
        ("user@xn--bcher-kva.example", True),
        (".a@example.com", False),
        ("a.@example.com", False),
        ("a..b@example.com", False),
        ("a@example", False),
        ("a@-example.com", False),
        ("a@example.c", False),
        ("a@example.123", False),
        ("@example.com", False),
    ],
)
def test_email_syntax(address: str, valid: bool) -> None:
    local, _, domain = address.rpartition("@")
    assert email_valid(local.encode(), domain.encode()) is valid


def test_nanp() -> None:
    assert nanp_valid(b"2125550187")
    assert not nanp_valid(b"1125550187")  # area codes do not start with 1
    assert not nanp_valid(b"2121550187")  # nor exchanges
    assert not nanp_valid(b"212555018")

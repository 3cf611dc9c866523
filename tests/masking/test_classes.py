"""The class vocabulary: every class has defaults, names parse, rankings are consistent."""

from __future__ import annotations

import pytest

from bastion.masking.classes import (
    CLASS_SPECS,
    SensitiveClass,
    Strategy,
    default_strategy,
    parse_class,
    parse_strategy,
)


def test_every_class_has_a_spec() -> None:
    assert set(CLASS_SPECS) == set(SensitiveClass)
    for sensitive_class, spec in CLASS_SPECS.items():
        assert spec.sensitive_class is sensitive_class
        assert spec.description


def test_secrets_are_redacted_by_default() -> None:
    for secret in ("password", "secret", "token", "api_key", "private_key", "jwt", "ssn"):
        assert default_strategy(SensitiveClass(secret)) is Strategy.REDACT


def test_keys_outrank_the_numbers_inside_them() -> None:
    rank = {c: spec.rank for c, spec in CLASS_SPECS.items()}
    assert rank[SensitiveClass.PRIVATE_KEY] < rank[SensitiveClass.API_KEY]
    assert rank[SensitiveClass.API_KEY] < rank[SensitiveClass.CARD_NUMBER]
    assert rank[SensitiveClass.CARD_NUMBER] < rank[SensitiveClass.PHONE]
    assert rank[SensitiveClass.JWT] < rank[SensitiveClass.TOKEN]


def test_parsing_names() -> None:
    assert parse_class(" Email ") is SensitiveClass.EMAIL
    assert parse_strategy("HASH") is Strategy.HASH
    with pytest.raises(ValueError, match="known classes: email"):
        parse_class("e-mail")
    with pytest.raises(ValueError, match="redact"):
        parse_strategy("scramble")

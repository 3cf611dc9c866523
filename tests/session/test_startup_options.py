"""Startup `options`: Bastion's own settings are taken out, the rest is forwarded intact."""

from __future__ import annotations

import pytest

from bastion.errors import ProtocolViolation
from bastion.session.startup_options import parse_options, split_options


def test_bastion_settings_are_removed() -> None:
    parsed = parse_options("-c bastion.auth=token -c search_path=app --work_mem=64MB")
    assert parsed.bastion == {"bastion.auth": "token"}
    assert parsed.forwarded == "-c search_path=app --work_mem=64MB"


@pytest.mark.parametrize(
    "options",
    ["-cbastion.auth=token", "--bastion.auth=token", "-c BASTION.AUTH=token"],
)
def test_every_spelling_is_recognised(options: str) -> None:
    parsed = parse_options(options)
    assert parsed.forwarded == ""
    assert len(parsed.bastion) == 1


def test_escaped_spaces_survive() -> None:
    assert split_options(r"-c application_name=a\ b") == ["-c", "application_name=a b"]
    parsed = parse_options(r"-c application_name=a\ b\\c")
    assert parsed.forwarded == r"-c application_name=a\ b\\c"


def test_dangling_switch_is_refused() -> None:
    with pytest.raises(ProtocolViolation):
        parse_options("-c")
    with pytest.raises(ProtocolViolation):
        parse_options("-c bastion.auth")


def test_empty() -> None:
    assert parse_options("").forwarded == ""
    assert parse_options("   ").bastion == {}

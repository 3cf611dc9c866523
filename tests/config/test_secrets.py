"""Secret references: which spellings are accepted, how they resolve, and what errors say."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from bastion.config.secrets import INLINE_SECRET_MESSAGE, SecretRef, resolve_secret
from bastion.errors import ConfigError

from .samples import SECRET

SECRET_REF = TypeAdapter(SecretRef)


@pytest.mark.parametrize("ref", ["env:DB_PASSWORD", "env:_X1", "file:/run/secrets/db", "file:pw"])
def test_references_are_accepted(ref: str) -> None:
    assert SECRET_REF.validate_python(ref) == ref


@pytest.mark.parametrize("value", [SECRET, "", "ENV:X", f"password:{SECRET}", 12345])
def test_inline_values_are_rejected_without_echo(value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        SECRET_REF.validate_python(value)
    assert caught.value.errors()[0]["msg"] == f"Value error, {INLINE_SECRET_MESSAGE}"
    assert SECRET not in caught.value.errors()[0]["msg"]


@pytest.mark.parametrize("ref", [f"env:{SECRET}", "env:", "env:1ABC", "file:"])
def test_malformed_references_are_rejected_without_echo(ref: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SECRET_REF.validate_python(ref)
    message = caught.value.errors()[0]["msg"]
    assert "must be followed by" in message
    assert SECRET not in message


def test_env_reference_reads_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_TEST_SECRET", SECRET)
    assert resolve_secret("env:BASTION_TEST_SECRET") == SECRET


def test_unset_env_variable_names_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BASTION_TEST_SECRET", raising=False)
    with pytest.raises(ConfigError) as caught:
        resolve_secret("env:BASTION_TEST_SECRET")
    assert caught.value.message == (
        "secret env:BASTION_TEST_SECRET: environment variable BASTION_TEST_SECRET is not set"
    )


def test_empty_env_variable_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_TEST_SECRET", "")
    with pytest.raises(ConfigError, match="BASTION_TEST_SECRET is empty"):
        resolve_secret("env:BASTION_TEST_SECRET")


def test_file_reference_strips_one_trailing_newline(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(SECRET + "\n\n", encoding="utf-8")
    assert resolve_secret("file:pw", tmp_path) == SECRET + "\n"


def test_file_reference_strips_crlf(tmp_path: Path) -> None:
    (tmp_path / "pw").write_bytes(SECRET.encode() + b"\r\n")
    assert resolve_secret(f"file:{tmp_path / 'pw'}") == SECRET


def test_file_reference_keeps_a_secret_without_newline(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(" spaced secret ", encoding="utf-8")
    assert resolve_secret("file:pw", tmp_path) == " spaced secret "


def test_relative_file_reference_uses_base_dir(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "db").write_text(SECRET, encoding="utf-8")
    assert resolve_secret("file:secrets/db", tmp_path) == SECRET


def test_missing_file_names_the_reference(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_secret("file:missing", tmp_path)
    assert caught.value.message.startswith("secret file:missing: cannot read ")
    assert "No such file or directory" in caught.value.message


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="is empty"):
        resolve_secret("file:pw", tmp_path)


def test_undecodable_file_does_not_leak_its_bytes(tmp_path: Path) -> None:
    (tmp_path / "pw").write_bytes(SECRET.encode() + b"\xff\xfe")
    with pytest.raises(ConfigError) as caught:
        resolve_secret("file:pw", tmp_path)
    assert "not valid UTF-8" in caught.value.message
    full_report = "".join(traceback.format_exception(caught.value))
    assert SECRET not in full_report
    assert "xff" not in full_report


def test_resolving_an_inline_value_does_not_echo_it() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_secret(SECRET)
    assert INLINE_SECRET_MESSAGE in caught.value.message
    assert SECRET not in "".join(traceback.format_exception(caught.value))

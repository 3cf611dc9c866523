"""Rules of the configuration model that go beyond types: exclusive keys, unique names, files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from bastion.config import BastionConfig, UpstreamTlsMode, config_from_mapping
from bastion.config.docs import render_reference
from bastion.errors import ConfigError

from .samples import SECRET


def target(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "shop",
        "host": "127.0.0.1",
        "database": "shop",
        "credentials": {"default": {"user": "app", "password": "env:SHOP_PASSWORD"}},
    }
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}


def error_of(data: dict[str, Any], base_dir: Path | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(data, source="bastion.yaml", base_dir=base_dir)
    return caught.value.message


def test_a_realistic_target_loads() -> None:
    config = config_from_mapping({"targets": [target(labels={"environment": "production"})]})
    shop = config.target_named("shop")
    assert shop is not None
    assert shop.port == 5432
    assert shop.tls is UpstreamTlsMode.PREFER
    assert shop.labels == {"environment": "production"}
    assert shop.connect_timeout_seconds == 10
    assert config.target_named("other") is None


def test_target_needs_host_or_unix_socket() -> None:
    assert error_of({"targets": [target(host=None)]}) == (
        "bastion.yaml: targets[0]: set exactly one of host and unix_socket"
    )


def test_target_cannot_have_both_host_and_unix_socket() -> None:
    message = error_of({"targets": [target(unix_socket="/var/run/postgresql")]})
    assert message == "bastion.yaml: targets[0]: set exactly one of host and unix_socket"


def test_unix_socket_alone_is_fine() -> None:
    config = config_from_mapping(
        {"targets": [target(host=None, unix_socket="/var/run/postgresql")]}
    )
    assert config.targets[0].unix_socket == Path("/var/run/postgresql")


def test_duplicate_target_names_name_both_indexes() -> None:
    data = {"targets": [target(), target(name="other"), target()]}
    assert error_of(data) == (
        "bastion.yaml: targets: targets[0] and targets[2] have the same name 'shop'; "
        "each must be unique"
    )


def test_duplicate_listener_addresses_are_rejected() -> None:
    data = {"listeners": {"postgres": [{"port": 7000}, {"port": 7000}]}}
    assert "postgres[0] and postgres[1] have the same address '127.0.0.1:7000'" in error_of(data)


def test_duplicate_oidc_issuer_names_are_rejected() -> None:
    issuer = {"name": "corp", "issuer": "https://i", "audience": "a", "jwks_url": "https://j"}
    message = error_of({"identities": {"oidc": [issuer, issuer]}})
    assert "identities.oidc: oidc[0] and oidc[1] have the same name 'corp'" in message


def test_default_credential_is_required() -> None:
    data = {"targets": [target(credentials={"readonly": {"user": "ro"}})]}
    assert error_of(data).startswith(
        "bastion.yaml: targets[0].credentials: a 'default' credential is required"
    )


def test_credentials_without_password_are_allowed() -> None:
    config = config_from_mapping({"targets": [target(credentials={"default": {"user": "u"}})]})
    assert config.targets[0].credentials["default"].password is None
    assert config.secret_references() == []


@pytest.mark.parametrize("name", ["", "-shop", "shop db", "x" * 64, "shop/1"])
def test_target_names_are_restricted(name: str) -> None:
    assert "target names are 1 to 63" in error_of({"targets": [target(name=name)]})


@pytest.mark.parametrize("name", ["shop", "_shop", "shop.eu-1", "x" * 63])
def test_valid_target_names(name: str) -> None:
    assert config_from_mapping({"targets": [target(name=name)]}).targets[0].name == name


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"listeners": {"postgres": [{"port": 0}]}}, "listeners.postgres[0].port: must be"),
        ({"listeners": {"postgres": [{"port": 65536}]}}, "listeners.postgres[0].port: must be"),
        ({"targets": [target(port="five")]}, "targets[0].port: must be a valid integer"),
        ({"targets": [target(connect_timeout_seconds=0)]}, "connect_timeout_seconds: must be"),
        ({"targets": [target(tls="verify")]}, "targets[0].tls: must be 'disable'"),
        ({"limits": {"max_message_bytes": -1}}, "limits.max_message_bytes: must be greater"),
        ({"logging": {"format": "xml"}}, "logging.format: must be 'json' or 'text'"),
    ],
)
def test_values_out_of_range(data: dict[str, Any], expected: str) -> None:
    assert expected in error_of(data)


def test_tls_files_must_exist(tmp_path: Path) -> None:
    data = {"listeners": {"postgres": [{"tls": {"cert": "server.crt", "key": "server.key"}}]}}
    (tmp_path / "server.crt").write_text("x", encoding="utf-8")
    message = error_of(data, base_dir=tmp_path)
    assert message == (
        f"bastion.yaml: listeners.postgres[0].tls.key: file not found: {tmp_path / 'server.key'}"
    )
    (tmp_path / "server.key").write_text("x", encoding="utf-8")
    config = config_from_mapping(data, base_dir=tmp_path)
    assert config.listeners.postgres[0].tls != "auto"


def test_tls_file_must_be_a_file(tmp_path: Path) -> None:
    (tmp_path / "server.key").write_text("x", encoding="utf-8")
    data = {"listeners": {"postgres": [{"tls": {"cert": ".", "key": "server.key"}}]}}
    assert "tls.cert: not a regular file" in error_of(data, base_dir=tmp_path)


def test_tls_mapping_needs_both_files(tmp_path: Path) -> None:
    (tmp_path / "server.crt").write_text("x", encoding="utf-8")
    data = {"listeners": {"postgres": [{"tls": {"cert": "server.crt"}}]}}
    assert error_of(data, base_dir=tmp_path) == (
        "bastion.yaml: listeners.postgres[0].tls.key: required key is missing"
    )


def test_tls_mode_must_be_known() -> None:
    data = {"listeners": {"postgres": [{"tls": "on"}]}}
    assert error_of(data) == "bastion.yaml: listeners.postgres[0].tls: must be 'off' or 'auto'"


def test_upstream_ca_bundle_must_exist(tmp_path: Path) -> None:
    data = {"targets": [target(tls="verify-full", tls_ca="ca.pem")]}
    assert "targets[0].tls_ca: file not found" in error_of(data, base_dir=tmp_path)


def test_require_tls_needs_tls() -> None:
    data = {"listeners": {"postgres": [{"tls": "off", "require_tls": True}]}}
    assert "require_tls: true needs tls" in error_of(data)


def test_validating_directly_hides_inline_secrets() -> None:
    data = {"targets": [target(credentials={"default": {"user": "u", "password": SECRET}})]}
    with pytest.raises(ValidationError) as caught:
        BastionConfig.model_validate(data)
    assert SECRET not in str(caught.value)


def test_config_is_immutable() -> None:
    config = config_from_mapping({})
    with pytest.raises(ValidationError):
        config.logging.level = "debug"


def _models(model: type[BaseModel]) -> Iterator[type[BaseModel]]:
    yield model
    for field in model.model_fields.values():
        for nested in _nested(field.annotation):
            yield from _models(nested)


def _nested(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in getattr(annotation, "__args__", ()):
        yield from _nested(arg)


def test_every_model_forbids_unknown_keys_and_documents_every_key() -> None:
    models = set(_models(BastionConfig))
    assert len(models) >= 10
    reference = render_reference()
    for model in models:
        assert model.model_config.get("extra") == "forbid", model.__name__
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            assert f"| `{field.alias or name}` |" in reference

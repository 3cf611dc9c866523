"""The example configuration and the generated reference stay complete and current."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bastion.config import (
    BastionConfig,
    Identities,
    Limits,
    Listeners,
    Logging,
    UpstreamTlsMode,
    config_json_schema,
    load_config,
)
from bastion.config.docs import render_reference

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "bastion.yaml"
REFERENCE = ROOT / "docs" / "configuration.md"


def schema_keys(schema: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Every (dotted path, key) the JSON Schema allows, following $ref, unions and items."""
    defs = schema.get("$defs", {})

    def walk(node: dict[str, Any], path: str, seen: frozenset[str]) -> Iterator[tuple[str, str]]:
        ref = node.get("$ref")
        if ref is not None:
            name = ref.rsplit("/", 1)[-1]
            if name not in seen:
                yield from walk(defs[name], path, seen | {name})
        for key, child in node.get("properties", {}).items():
            child_path = f"{path}.{key}" if path else key
            yield child_path, key
            yield from walk(child, child_path, seen)
        for union in ("anyOf", "oneOf", "allOf"):
            for member in node.get(union, []):
                yield from walk(member, path, seen)
        if isinstance(node.get("items"), dict):
            yield from walk(node["items"], path + "[]", seen)
        if isinstance(node.get("additionalProperties"), dict):
            yield from walk(node["additionalProperties"], path + ".<name>", seen)

    yield from walk(schema, "", frozenset())


def test_schema_walk_finds_nested_keys() -> None:
    paths = {path for path, _ in schema_keys(config_json_schema())}
    assert "listeners.postgres[].tls.cert" in paths
    assert "targets[].credentials.<name>.password" in paths
    assert "identities.oidc[].leeway_seconds" in paths
    assert len(paths) > 50


def test_example_mentions_every_key_of_the_schema() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    missing = sorted(
        path
        for path, key in schema_keys(config_json_schema())
        if not re.search(rf"^[\s#-]*{re.escape(key)}:", text, re.MULTILINE)
    )
    assert missing == []


def test_example_loads_and_spells_out_every_default() -> None:
    config = load_config(EXAMPLE)
    assert config.data_dir is None
    assert config.listeners == Listeners()
    assert config.identities == Identities()
    assert config.limits == Limits()
    assert config.logging == Logging()
    raw = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    assert set(raw) == set(BastionConfig.model_fields)
    for section in ("identities", "limits", "logging"):
        model = type(getattr(config, section))
        assert set(raw[section]) == set(model.model_fields), section
    assert set(raw["listeners"]["postgres"][0]) == set(type(Listeners().postgres[0]).model_fields)


def test_example_has_one_realistic_target() -> None:
    [shop] = load_config(EXAMPLE).targets
    assert (shop.name, shop.host, shop.port, shop.database) == ("shop", "127.0.0.1", 5432, "shop")
    assert shop.credentials["default"].password == "env:BASTION_SHOP_PASSWORD"
    assert shop.labels == {"environment": "production"}
    assert shop.tls is UpstreamTlsMode.PREFER


def test_reference_is_current() -> None:
    assert REFERENCE.read_text(encoding="utf-8") == render_reference(), (
        "docs/configuration.md is stale: run `bastion config docs > docs/configuration.md`"
    )


@pytest.mark.parametrize(
    "heading",
    [
        "### Top level",
        "### `listeners.postgres[]`",
        "### `listeners.postgres[].tls`",
        "### `targets[]`",
        "### `targets[].credentials.<name>`",
        "### `identities.users[]`",
        "### `identities.oidc[]`",
        "### `limits`",
        "### `logging`",
    ],
)
def test_reference_has_a_section_per_model(heading: str) -> None:
    assert f"\n{heading}\n" in render_reference()


def test_reference_shows_types_and_defaults() -> None:
    reference = render_reference()
    assert "| `port` | integer, 1 to 65535 | `6432` |" in reference
    assert "| `database` | string | *required* |" in reference
    assert "| `max_message_bytes` | integer, more than 0 | `67108864` |" in reference
    assert "| `tls` | `disable`, `prefer`, `require`, `verify-ca` or `verify-full` |" in reference

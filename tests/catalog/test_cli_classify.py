"""`bastion classify` against the demo shop: the table, JSON, filters, warnings and failures."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from bastion.cli.main import main
from bastion.config.loader import config_from_mapping
from bastion.errors import ConfigError
from bastion.masking.classes import SensitiveClass, Strategy

from .conftest import SampleShop

PASSWORD_ENV = "BASTION_CLASSIFY_TEST_PASSWORD"


@pytest.fixture(scope="module")
def shop_with_view(sample_shop: SampleShop) -> SampleShop:
    sample_shop.execute(
        "CREATE VIEW customer_contacts AS SELECT c.id, c.email AS contact FROM customers c"
    )
    return sample_shop


def write_config(
    tmp_path: Path, shop: SampleShop, *, port: int | None = None, **extra: Any
) -> Path:
    endpoint = shop.endpoint
    credential: dict[str, Any] = {"user": endpoint.superuser}
    if endpoint.password is not None:
        credential["password"] = f"env:{PASSWORD_ENV}"
    target: dict[str, Any] = {
        "name": "shop",
        "host": endpoint.host,
        "port": port or endpoint.port,
        "database": shop.database,
        "tls": "disable",
        "credentials": {"default": credential},
        "masking_labels": {
            "public.customers.city": "address",
            "public.customers.nickname": "person_name",
        },
    }
    document = {"targets": [target], **extra}
    path = tmp_path / "bastion.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def password(monkeypatch: pytest.MonkeyPatch, sample_shop: SampleShop) -> None:
    monkeypatch.setenv(PASSWORD_ENV, sample_shop.endpoint.password or "unused")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["classify", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def row_of(table: str, column: str) -> list[str]:
    for line in table.splitlines():
        if line.startswith(column + " "):
            return line.split()
    raise AssertionError(f"{column} not in the table")


def test_the_table_shows_every_column_and_why(
    tmp_path: Path, shop_with_view: SampleShop, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, shop_with_view)
    status, out, err = run(capsys, "--target", "shop", "--config", str(config))
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["COLUMN", "TYPE", "ACTION", "CLASS", "STRATEGY", "REASON"]
    email = " ".join(row_of(out, "public.customers.email"))
    assert email.startswith("public.customers.email text mask email partial name rule: email")
    city = " ".join(row_of(out, "public.customers.city"))
    assert city == "public.customers.city text mask address redact label: address"
    notes = row_of(out, "public.customers.notes")
    assert notes[2:5] == ["scan", "-", "-"]
    assert "content scan: text can hold free text" in " ".join(notes)
    assert row_of(out, "public.customers.id")[2] == "pass"
    contact = " ".join(row_of(out, "public.customer_contacts.contact"))
    assert "mask email partial view column of public.customers.email" in contact
    assert lines[-1].startswith(f"{len(lines) - 3} columns: ")
    assert (
        "warning: masking label 'public.customers.nickname' of target 'shop' names no column" in err
    )


def test_json_output(
    tmp_path: Path, shop_with_view: SampleShop, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, shop_with_view, masking={"strategies": {"email": "hash"}})
    status, out, _ = run(capsys, "--target", "shop", "--config", str(config), "--json")
    assert status == 0
    document = json.loads(out)
    assert document["target"] == "shop" and document["database"] == shop_with_view.database
    assert document["masking_enabled"] is True
    assert document["unmatched_labels"] == ["public.customers.nickname"]
    by_name = {f"{c['schema']}.{c['table']}.{c['column']}": c for c in document["columns"]}
    email = by_name["public.customers.email"]
    described = [email[key] for key in ("relation_kind", "type", "action", "class", "strategy")]
    assert described == ["table", "text", "mask", "email", "hash"]
    assert (email["table_oid"], email["attnum"]) == (shop_with_view.oid("public.customers"), 3)
    contact = by_name["public.customer_contacts.contact"]
    assert contact["relation_kind"] == "view" and contact["strategy"] == "hash"
    total = by_name["public.orders.total"]
    assert (total["type"], total["action"], total["class"], total["strategy"]) == (
        "numeric(10,2)",
        "pass",
        None,
        None,
    )


def test_sensitive_only_lists_masked_columns(
    tmp_path: Path, shop_with_view: SampleShop, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, shop_with_view)
    status, out, _ = run(
        capsys, "--target", "shop", "--config", str(config), "--sensitive-only", "--json"
    )
    assert status == 0
    columns = json.loads(out)["columns"]
    assert {c["action"] for c in columns} == {"mask"}
    names = {f"{c['table']}.{c['column']}" for c in columns}
    assert {"customers.email", "customers.ssn", "api_credentials.token"} <= names
    assert "customers.notes" not in names


def test_an_unreachable_target_exits_1_without_the_password(
    tmp_path: Path,
    sample_shop: SampleShop,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = "never-print-me-0451"
    monkeypatch.setenv(PASSWORD_ENV, secret)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    endpoint = sample_shop.endpoint
    config = write_config(tmp_path, sample_shop, port=port)
    text = config.read_text(encoding="utf-8")
    if endpoint.password is None:  # make sure a password is in play
        document = yaml.safe_load(text)
        document["targets"][0]["credentials"]["default"]["password"] = f"env:{PASSWORD_ENV}"
        config.write_text(yaml.safe_dump(document), encoding="utf-8")
    status, out, err = run(capsys, "--target", "shop", "--config", str(config))
    assert status == 1
    assert out == ""
    assert err.startswith(
        f'bastion classify: cannot read the catalog of target "shop" at {endpoint.host}:{port}: '
    )
    assert secret not in err


def test_an_unknown_target_is_a_usage_error(
    tmp_path: Path, sample_shop: SampleShop, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, sample_shop)
    status, out, err = run(capsys, "--target", "nope", "--config", str(config))
    assert status == 2 and out == ""
    assert "has no target named 'nope' (targets: shop)" in err


def test_a_bad_label_is_a_configuration_error(
    tmp_path: Path, sample_shop: SampleShop, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, sample_shop)
    document = yaml.safe_load(config.read_text(encoding="utf-8"))
    document["targets"][0]["masking_labels"]["public.customers.notes"] = "emial"
    config.write_text(yaml.safe_dump(document), encoding="utf-8")
    status, _, err = run(capsys, "--target", "shop", "--config", str(config))
    assert status == 2
    assert "targets[0].masking_labels['public.customers.notes']" in err
    assert "unknown sensitive class 'emial'" in err


def test_masking_settings_are_checked_when_the_configuration_loads(tmp_path: Path) -> None:
    key = tmp_path / "hash.key"
    key.write_text("0123456789abcdef0123456789abcdef\n", encoding="utf-8")
    target = {
        "name": "shop",
        "host": "127.0.0.1",
        "database": "shop",
        "credentials": {"default": {"user": "app"}},
        "masking_labels": {"public.customers.Notes": " Email:HASH ", "public.t.c": "none"},
    }
    masking = {"strategies": {"Email": "Hash", "phone": "redact"}, "hash_key": "hash.key"}
    config = config_from_mapping({"targets": [target], "masking": masking}, base_dir=tmp_path)
    assert config.targets[0].masking_labels == {
        "public.customers.Notes": "email:hash",
        "public.t.c": "none",
    }
    assert config.masking.strategy_overrides() == {
        SensitiveClass.EMAIL: Strategy.HASH,
        SensitiveClass.PHONE: Strategy.REDACT,
    }
    assert config.masking.hash_key == key
    assert (config.masking.enabled, config.masking.catalog_ttl_seconds) == (True, 300)

    bad: list[tuple[dict[str, Any], str]] = [
        ({"masking": {"strategies": {"emial": "hash"}}}, "unknown sensitive class 'emial'"),
        ({"masking": {"strategies": {"email": "shred"}}}, "unknown masking strategy 'shred'"),
        ({"masking": {"hash_key": "missing.key"}}, "masking.hash_key: file not found"),
        ({"masking": {"catalog_ttl_seconds": 0}}, "masking.catalog_ttl_seconds"),
    ]
    for document, message in bad:
        with pytest.raises(ConfigError) as raised:
            config_from_mapping(document, base_dir=tmp_path)
        assert message in raised.value.message
    for label_key in ("customers.email", "public..email", "public.customers."):
        labelled = {**target, "masking_labels": {label_key: "email"}}
        with pytest.raises(ConfigError) as raised:
            config_from_mapping({"targets": [labelled]})
        assert "must name a column as schema.table.column" in raised.value.message

"""`bastion config check | schema | docs`: exit statuses and output."""

from __future__ import annotations

import argparse
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from bastion.cli import config_cmd
from bastion.config.docs import render_reference

from .conftest import WriteConfig
from .samples import SECRET

TARGET = """\
targets:
  - name: shop
    host: 127.0.0.1
    database: shop
    credentials:
      default: {user: app, password: env:BASTION_TEST_SHOP_PASSWORD}
      readonly: {user: reader, password: file:reader.password}
"""


def run(argv: Sequence[str]) -> int:
    """Run a `bastion` command line through the config module's own parser."""
    parser = argparse.ArgumentParser(prog="bastion")
    config_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    status: int = args.func(args)
    return status


def test_check_reports_counts(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config("listeners:\n  postgres: [{port: 6432}, {port: 6433}]\n")
    assert run(["config", "check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: ok (2 listeners, 0 targets, 0 users, 0 OIDC issuers)\n"
    assert err == ""


def test_check_resolves_secrets(
    tmp_path: Path,
    write_config: WriteConfig,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BASTION_TEST_SHOP_PASSWORD", SECRET)
    (tmp_path / "reader.password").write_text(SECRET + "-ro\n", encoding="utf-8")
    path = write_config(TARGET)
    assert run(["config", "check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: ok (1 listeners, 1 targets, 0 users, 0 OIDC issuers)\n"
    assert SECRET not in out + err


def test_check_reports_each_unresolvable_secret(
    write_config: WriteConfig,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BASTION_TEST_SHOP_PASSWORD", raising=False)
    path = write_config(TARGET)
    assert run(["config", "check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert lines[0] == (
        f"{path}: targets[0].credentials.default.password: secret "
        "env:BASTION_TEST_SHOP_PASSWORD: environment variable BASTION_TEST_SHOP_PASSWORD "
        "is not set"
    )
    assert lines[1].startswith(
        f"{path}: targets[0].credentials.readonly.password: secret file:reader.password: "
        "cannot read "
    )
    assert len(lines) == 2


def test_check_can_skip_secrets(
    write_config: WriteConfig,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BASTION_TEST_SHOP_PASSWORD", raising=False)
    path = write_config(TARGET)
    assert run(["config", "check", "--no-secrets", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: ok (")


def test_check_fails_with_status_2_on_invalid_files(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(TARGET.replace("env:BASTION_TEST_SHOP_PASSWORD", SECRET))
    assert run(["config", "check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"{path}: targets[0].credentials.default.password: inline secrets are not allowed; "
        "use env:NAME or file:PATH (line 6)\n"
    )


def test_check_fails_with_status_2_on_missing_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["config", "check", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: cannot read" in capsys.readouterr().err


def test_config_without_subcommand_shows_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["config"]) == 2
    assert "check" in capsys.readouterr().err


def test_schema_is_json_with_the_top_level_sections(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["config", "schema"]) == 0
    out = capsys.readouterr().out
    schema = json.loads(out)
    assert {"listeners", "targets", "identities", "limits", "logging"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False
    assert out.startswith('{\n  "$schema"')


def test_docs_prints_the_reference(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["config", "docs"]) == 0
    assert capsys.readouterr().out == render_reference()


OTHER_COMMANDS = ("bastion.cli.serve", "bastion.cli.demo", "bastion.cli.users")


@pytest.mark.skipif(
    not all(importlib.util.find_spec(name) for name in OTHER_COMMANDS),
    reason="the other command modules of `bastion` are not all present yet",
)
def test_through_the_bastion_entry_point(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    from bastion.cli.main import main

    path = write_config("")
    assert main(["config", "check", str(path)]) == 0
    assert (
        capsys.readouterr().out == f"{path}: ok (1 listeners, 0 targets, 0 users, 0 OIDC issuers)\n"
    )
    assert main(["config", "check", str(path.with_name("missing.yaml"))]) == 2

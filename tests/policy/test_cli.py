"""`bastion policy check | explain | schema | guardrails`: exit statuses and output."""

from __future__ import annotations

import argparse
import json
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest

from bastion.cli import policy as policy_cli

from .conftest import WritePolicy

POLICY = """
version: 1
sessions:
  - {id: agents, match: {kinds: [agent]}, credential: readonly, read_only: true}
rules:
  - id: analysts-read
    match: {groups: [analysts], statements: [select]}
    effect: allow
    obligations: {max_rows: 100}
  - id: office-network
    match: {groups: [analysts]}
    when: 'source.ip_in("10.0.0.0/8")'
    effect: allow
"""

CONFIG = """
targets:
  - name: demo
    host: 127.0.0.1
    database: shop
    credentials:
      default: {user: app, password: env:BASTION_TEST_PASSWORD}
    labels: {environment: production}
policy: policy.yaml
"""


def run(argv: Sequence[str]) -> int:
    """Run a `bastion` command line through this module's own parser."""
    parser = argparse.ArgumentParser(prog="bastion")
    policy_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    status: int = args.func(args)
    return status


def write_config(tmp_path: Path, text: str = CONFIG) -> Path:
    path = tmp_path / "bastion.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_check_ok(write_policy: WritePolicy, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_policy(POLICY)
    assert run(["policy", "check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: ok (2 rules, 1 session rules, guardrails auto with 0 overrides)\n"
    assert err == ""


def test_check_reports_the_problem(
    write_policy: WritePolicy, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_policy("version: 1\nrules: [{id: r, effect: alow}]\n")
    assert run(["policy", "check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"{path}: rules[0].effect: must be 'allow'")


def test_check_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["policy", "check", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_check_against_a_config(
    tmp_path: Path, write_policy: WritePolicy, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_policy(POLICY + "targets:\n  sandbox: {default_effect: allow}\n")
    config = write_config(tmp_path)
    assert run(["policy", "check", str(path), "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "sessions[0] (agents): target 'demo' has no upstream credential 'readonly'" in err
    assert "warning: targets.sandbox: no target of that name is configured" in err
    with_readonly = CONFIG.replace(
        "      default: {user: app, password: env:BASTION_TEST_PASSWORD}",
        "      default: {user: app, password: env:BASTION_TEST_PASSWORD}\n"
        "      readonly: {user: reader}",
    )
    write_config(tmp_path, with_readonly)
    assert run(["policy", "check", str(path), "--config", str(config)]) == 0


def test_explain_prints_decision_rules_and_analysis(
    write_policy: WritePolicy, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_policy(POLICY)
    argv = ["policy", "explain", "--policy", str(path), "--user", "alice"]
    argv += ["--group", "analysts", "--target", "demo", "--source-ip", "192.168.1.5"]
    assert run([*argv, "SELECT 1; DROP TABLE t"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("decision: DENY by default\n")
    assert "statement 1: SELECT 1" in out
    assert "ALLOW by analysts-read (at most 100 rows)" in out
    assert "+ analysts-read (allow): groups analysts matches ['analysts']" in out
    assert "statement 2: DROP TABLE t" in out
    assert "analysis: kind=drop_table" in out
    # A near miss says what differs.
    assert "- analysts-read (allow): statements: drop_table does not match ['select']" in out
    assert "- office-network (allow): when 'source.ip_in(\"10.0.0.0/8\")' is false" in out
    assert "session: CONNECT by default (credential default)" in out


def test_explain_json(write_policy: WritePolicy, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_policy(POLICY)
    argv = ["policy", "explain", "--policy", str(path), "--user", "bot", "--kind", "agent"]
    argv += ["--target", "demo", "--label", "environment=production", "--tls", "--json"]
    assert run([*argv, "TRUNCATE t"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["decision"]["effect"] == "deny"
    assert result["session"]["decision"] == {
        "effect": "allow",
        "rule": "agents",
        "credential": "readonly",
        "read_only": True,
    }
    assert result["variables"]["source"]["tls"] is True
    assert result["variables"]["target"]["labels"] == {"environment": "production"}
    (trace,) = result["statements"]
    assert trace["statement"]["kind"] == "truncate"
    guardrails = {g["id"]: g for g in trace["guardrails"]}
    assert guardrails["truncate"]["matched"] is True
    assert guardrails["truncate"]["active"] is True
    assert guardrails["drop_table"]["matched"] is False
    rules = {rule["id"]: rule for rule in trace["rules"]}
    assert rules["analysts-read"]["matched"] is False
    assert rules["analysts-read"]["checks"][0] == {
        "field": "groups",
        "ok": False,
        "patterns": ["analysts"],
        "actual": [],
    }


def test_explain_at_a_time(write_policy: WritePolicy, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_policy("version: 1\nrules: [{id: day, when: 'time.hour < 12', effect: allow}]\n")
    argv = ["policy", "explain", "--policy", str(path), "--user", "u", "--target", "t", "--json"]
    assert run([*argv, "--at", "2024-01-01T09:00:00", "SELECT 1"]) == 0
    assert json.loads(capsys.readouterr().out)["decision"]["effect"] == "allow"
    assert run([*argv, "--at", "2024-01-01T15:00:00+00:00", "SELECT 1"]) == 0
    assert json.loads(capsys.readouterr().out)["decision"]["effect"] == "deny"


def test_explain_with_the_config(
    tmp_path: Path, write_policy: WritePolicy, capsys: pytest.CaptureFixture[str]
) -> None:
    write_policy("version: 1\ndefault_effect: allow\n")
    config = write_config(tmp_path)
    argv = ["policy", "explain", "--config", str(config), "--user", "dana", "--target", "demo"]
    assert run([*argv, "DROP TABLE t"]) == 0
    out = capsys.readouterr().out
    # The labels come from the configuration: demo is production, so guardrails apply.
    assert out.startswith("decision: DENY by guardrail.drop_table\n")
    assert "active: target is labelled environment: production" in out
    # A label given on the command line replaces the configured one.
    assert run([*argv, "--label", "environment=staging", "DROP TABLE t"]) == 0
    assert capsys.readouterr().out.startswith("decision: ALLOW by default\n")


def test_explain_usage_errors(
    tmp_path: Path, write_policy: WritePolicy, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_policy(POLICY)
    base = ["policy", "explain", "--user", "u", "--target", "demo"]
    assert run([*base, "SELECT 1"]) == 2
    assert "--policy FILE or --config CONFIG" in capsys.readouterr().err
    assert run([*base, "--policy", str(path), "--label", "novalue", "SELECT 1"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert run([*base, "--policy", str(path), ""]) == 2
    assert "no statement" in capsys.readouterr().err
    assert run([*base, "--policy", str(path), "--at", "yesterday", "SELECT 1"]) == 2
    assert "ISO 8601" in capsys.readouterr().err
    config = write_config(tmp_path, CONFIG.replace("policy: policy.yaml\n", ""))
    assert run([*base, "--config", str(config), "SELECT 1"]) == 2
    assert "no `policy` key" in capsys.readouterr().err
    assert run([*base[:-1], "elsewhere", "--config", str(config), "SELECT 1"]) == 2
    assert "no target named 'elsewhere'" in capsys.readouterr().err


def test_explain_of_sql_that_does_not_parse(
    write_policy: WritePolicy, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_policy(POLICY)
    argv = ["policy", "explain", "--policy", str(path), "--user", "u", "--target", "demo"]
    assert run([*argv, "SELEC 1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("decision: DENY by analysis.unknown\n")
    assert "not analyzed: Bastion could not analyze this statement" in out


def test_schema_and_guardrails(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["policy", "schema"]) == 0
    assert "rules" in json.loads(capsys.readouterr().out)["properties"]
    assert run(["policy", "guardrails"]) == 0
    out = capsys.readouterr().out
    assert "drop_table" in out
    assert "dynamic_sql" in out and "require_approval" in out


def test_policy_without_subcommand_prints_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["policy"]) == 2
    assert "usage:" in capsys.readouterr().err


def test_explain_auth_method(write_policy: WritePolicy, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_policy(
        "version: 1\nrules: [{id: sso, when: 'identity.auth_method.startsWith(\"oidc:\")', "
        "effect: allow}]\n"
    )
    argv = ["policy", "explain", "--policy", str(path), "--user", "u", "--target", "t", "--json"]
    assert run([*argv, "SELECT 1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["variables"]["identity"]["auth_method"] == "scram-sha-256"
    assert result["decision"]["effect"] == "deny"
    assert run([*argv, "--auth-method", "oidc:corp", "SELECT 1"]) == 0
    assert json.loads(capsys.readouterr().out)["decision"]["effect"] == "allow"

"""Bad policy files: every problem names the file, the path of the bad key and what is wrong."""

from __future__ import annotations

import json

import pytest

from bastion.errors import ConfigError
from bastion.policy.loader import load_policy
from bastion.policy.model import DefaultEffect, Effect, policy_json_schema

from .conftest import WritePolicy


def error_of(write_policy: WritePolicy, text: str) -> str:
    path = write_policy(text)
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    message = info.value.message
    assert message.startswith(f"{path}: "), message
    return message.removeprefix(f"{path}: ")


def test_a_valid_file(write_policy: WritePolicy) -> None:
    policy = load_policy(
        write_policy(
            """
            version: 1
            default_effect: allow
            targets:
              sandbox: {default_effect: deny}
            guardrails:
              enabled: on
              overrides:
                drop_table: {effect: require_approval}
            sessions:
              - {id: s, match: {kinds: [agent]}, credential: readonly, read_only: true}
            rules:
              - id: r
                match: {users: ["svc-*"], tables: [public.x], columns: [x.y], functions: [F]}
                when: 'source.ip_in("10.0.0.0/8")'
                effect: allow
                obligations: {max_rows: 5}
            """
        )
    )
    assert policy.default_effect == DefaultEffect.ALLOW
    assert policy.guardrails.enabled == "on"
    assert policy.rules[0].effect == Effect.ALLOW
    assert policy.rules[0].match.functions == ["f"]


def test_misspelled_key_in_a_rule(write_policy: WritePolicy) -> None:
    message = error_of(
        write_policy,
        """
        version: 1
        rules:
          - {id: a, effect: allow}
          - {id: b, effect: allow}
          - id: c
            match:
              statments: [select]
            effect: allow
        """,
    )
    assert message == "rules[2].match.statments: unknown key; did you mean 'statements'? (line 8)"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 1\ndefault_efect: allow\n", "default_efect: unknown key; did you mean"),
        ("version: 1\nguardrails: {enable: on}\n", "guardrails.enable: unknown key"),
        (
            "version: 1\nsessions: [{id: s, match: {statements: [select]}}]\n",
            "sessions[0].match.statements: unknown key",
        ),
        (
            "version: 1\ntargets: {x: {default_effect: allow, colour: red}}\n",
            "targets.x.colour: unknown key",
        ),
        (
            "version: 1\nguardrails: {overrides: {truncate: {efect: deny}}}\n",
            "guardrails.overrides.truncate.efect: unknown key; did you mean 'effect'?",
        ),
        (
            "version: 1\nrules: [{id: r, effect: allow, obligations: {max_row: 3}}]\n",
            "rules[0].obligations.max_row: unknown key; did you mean 'max_rows'?",
        ),
    ],
)
def test_unknown_keys_anywhere(write_policy: WritePolicy, text: str, expected: str) -> None:
    assert expected in error_of(write_policy, text)


def test_bad_cel_names_the_rule(write_policy: WritePolicy) -> None:
    message = error_of(
        write_policy,
        """
        version: 1
        rules:
          - id: office-hours
            when: 'time.hour >= 9 &&'
            effect: allow
        """,
    )
    assert message.startswith("rules[0].when: rule 'office-hours': invalid condition: 1:")
    assert "Syntax error" in message
    assert message.endswith("(line 5)")
    assert "\n" not in message


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("stmt.kind == 'x'", "unknown variable 'stmt'"),
        ("statement.tabels == []", "statement has no field 'tabels'"),
        ("ipin(source.ip, '10.0.0.0/8')", "unknown function 'ipin'"),
        ("   ", "the condition is empty"),
    ],
)
def test_cel_mistakes_are_load_errors(
    write_policy: WritePolicy, condition: str, expected: str
) -> None:
    message = error_of(
        write_policy, f"version: 1\nrules: [{{id: r, effect: deny, when: {condition!r}}}]\n"
    )
    assert "rule 'r'" in message
    assert expected in message


def test_statement_is_not_available_to_session_rules(write_policy: WritePolicy) -> None:
    message = error_of(
        write_policy,
        "version: 1\nsessions: [{id: s, when: 'statement.kind == \"select\"'}]\n",
    )
    assert "sessions[0].when: rule 's'" in message
    assert "'statement' is not available here" in message


def test_duplicate_rule_ids(write_policy: WritePolicy) -> None:
    message = error_of(
        write_policy,
        """
        version: 1
        rules:
          - {id: a, effect: allow}
          - {id: b, effect: allow}
          - {id: a, effect: deny}
        """,
    )
    assert "rules: rules[0] and rules[2] have the same id 'a'" in message


def test_duplicate_ids_across_sessions_and_rules(write_policy: WritePolicy) -> None:
    message = error_of(
        write_policy,
        "version: 1\nsessions: [{id: a}]\nrules: [{id: a, effect: allow}]\n",
    )
    assert "sessions[0] and rules[0] have the same id 'a'" in message


def test_unknown_guardrail(write_policy: WritePolicy) -> None:
    message = error_of(
        write_policy, "version: 1\nguardrails: {overrides: {drop_tabel: {enabled: false}}}\n"
    )
    assert "guardrails.overrides: unknown guardrail 'drop_tabel'; did you mean 'drop_table'?" in (
        message
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rules: []\n", "version: required key is missing"),
        ("version: 2\n", "version: must be 1"),
        ("version: 1\ndefault_effect: maybe\n", "default_effect: must be 'allow' or 'deny'"),
        ("version: 1\nrules: [{id: r}]\n", "rules[0].effect: required key is missing"),
        ("version: 1\nrules: [{id: r, effect: permit}]\n", "rules[0].effect: must be 'allow'"),
        (
            "version: 1\nrules: [{id: r, effect: deny, obligations: {read_only: true}}]\n",
            "rules[0].obligations: only allow rules take obligations",
        ),
        (
            "version: 1\nrules: [{id: r, effect: allow, approvers: {groups: [dba]}}]\n",
            "rules[0].approvers: only require_approval rules take approvers",
        ),
        (
            "version: 1\nrules: [{id: r, effect: require_approval, approvers: {min: 0}}]\n",
            "rules[0].approvers.min: must be greater than or equal to 1",
        ),
        (
            "version: 1\nrules: [{id: r, effect: allow, obligations: {max_rows: 0}}]\n",
            "rules[0].obligations.max_rows: must be greater than or equal to 1",
        ),
        ("version: 1\nrules: [{id: 'has space', effect: allow}]\n", "rules[0].id: rule ids are"),
        ("version: 1\nrules: [{id: default, effect: allow}]\n", "'default' is reserved"),
        (
            "version: 1\nrules: [{id: r, effect: allow, match: {kinds: [robot]}}]\n",
            "rules[0].match.kinds[0]: must be 'human', 'service' or 'agent'",
        ),
        (
            "version: 1\nrules: [{id: r, effect: allow, match: {users: []}}]\n",
            "rules[0].match.users: List should have at least 1 item",
        ),
        (
            "version: 1\nrules: [{id: r, effect: allow, match: {tables: [a.b.c]}}]\n",
            "'a.b.c' is not a table pattern",
        ),
        (
            "version: 1\nrules: [{id: r, effect: allow, match: {columns: [a.b.c.d]}}]\n",
            "'a.b.c.d' is not a column pattern",
        ),
        (
            "version: 1\nsessions: [{id: s, effect: deny, credential: readonly}]\n",
            "sessions[0]: deny rules refuse the connection; remove credential",
        ),
        ("version: 1\nguardrails: {enabled: sometimes}\n", "guardrails.enabled: must be 'auto'"),
        ("version: 1\ntargets: {'bad name': {default_effect: allow}}\n", "not a valid target"),
    ],
)
def test_invalid_values(write_policy: WritePolicy, text: str, expected: str) -> None:
    assert expected in error_of(write_policy, text)


def test_yaml_problems(write_policy: WritePolicy) -> None:
    assert "duplicate key 'rules'" in error_of(write_policy, "version: 1\nrules: []\nrules: []\n")
    assert "line 3, column 1" in error_of(write_policy, "version: 1\nrules: [\n")
    assert "top level must be a mapping" in error_of(write_policy, "- version\n")
    assert "top level must be a mapping" in error_of(write_policy, "")


def test_guardrails_enabled_accepts_booleans(write_policy: WritePolicy) -> None:
    assert load_policy(
        write_policy("version: 1\nguardrails: {enabled: false}\n")
    ).guardrails.enabled == ("off")


def test_json_schema_describes_the_file() -> None:
    schema = policy_json_schema()
    assert "rules" in schema["properties"]
    json.dumps(schema)

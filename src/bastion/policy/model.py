"""The typed shape of a policy file: rules, session rules, target defaults and guardrail settings.

This module owns the policy model and every check that needs only the file itself: unknown
keys, unique rule ids, well-formed patterns, known guardrail ids, and CEL conditions that
compile (they are compiled here, once, and reused by the engine). It does not read YAML
(`loader` does) and does not decide anything (`engine` does). Field descriptions are user
documentation and end up in the JSON Schema.
"""

from __future__ import annotations

import difflib
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bastion.config.model import TARGET_NAME_RE
from bastion.identity.records import IdentityKind
from bastion.masking.classes import parse_class
from bastion.policy.cel import (
    CONNECTION_VARIABLES,
    STATEMENT_VARIABLES,
    ConditionError,
    compile_condition,
)
from bastion.policy.guardrails import GUARDRAILS

MODEL_CONFIG = ConfigDict(extra="forbid", frozen=True)
RULE_ID_MAX = 64
_RULE_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


class Effect(StrEnum):
    """What a rule does to a statement it matches."""

    ALLOW = "allow"
    DENY = "deny"
    REQUIRE_APPROVAL = "require_approval"


class DefaultEffect(StrEnum):
    """What happens to a statement no rule matches."""

    ALLOW = "allow"
    DENY = "deny"


class SessionEffect(StrEnum):
    """What a session rule does to a connection it matches."""

    ALLOW = "allow"
    DENY = "deny"


GuardrailMode = Literal["auto", "on", "off"]


def _mode_from_bool(value: Any) -> Any:
    # `enabled: true` and `enabled: false` read naturally too.
    if value is True:
        return "on"
    if value is False:
        return "off"
    return value


def _check_rule_id(value: str) -> str:
    if (
        not value
        or len(value) > RULE_ID_MAX
        or not set(value) <= _RULE_ID_CHARS
        or value[0] in "-_"
    ):
        raise ValueError(
            f"rule ids are 1 to {RULE_ID_MAX} letters, digits, - and _, starting with a letter "
            "or digit"
        )
    if value == "default":
        raise ValueError("'default' is reserved for the default effect; choose another id")
    return value


def _check_patterns(values: list[str] | None, what: str, max_parts: int) -> list[str] | None:
    if values is None:
        return None
    for value in values:
        if not value or value != value.strip():
            raise ValueError(f"{what} patterns must not be empty or have surrounding blanks")
        parts = value.split(".")
        if len(parts) > max_parts or not all(parts):
            raise ValueError(f"{value!r} is not a {what} pattern ({_PATTERN_FORMS[what]})")
    return values


_PATTERN_FORMS = {
    "table": "name or schema.name",
    "column": "column, table.column or schema.table.column",
    "function": "name or schema.name",
}

NonEmptyStrings = Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]


class ConnectionMatch(BaseModel):
    """Conditions on who connects and to which target. Every key given must match; within a
    list, one matching item is enough."""

    model_config = MODEL_CONFIG

    users: NonEmptyStrings | None = Field(
        default=None, description="Glob patterns on the identity's name, such as alice or svc-*."
    )
    groups: NonEmptyStrings | None = Field(
        default=None,
        description="Glob patterns on group names; matches when any of the identity's groups "
        "matches any pattern.",
    )
    kinds: Annotated[list[IdentityKind], Field(min_length=1)] | None = Field(
        default=None, description="Identity kinds: human, service or agent."
    )
    targets: NonEmptyStrings | None = Field(
        default=None, description="Glob patterns on the target name (the client's dbname)."
    )
    target_labels: dict[str, str] | None = Field(
        default=None,
        description="Labels the target must carry, each value a glob pattern; all must match.",
    )


class StatementMatch(ConnectionMatch):
    """Conditions on who, where, and what the statement is."""

    statements: NonEmptyStrings | None = Field(
        default=None,
        description="Glob patterns on the statement kind, such as select or drop_*.",
    )
    tables: NonEmptyStrings | None = Field(
        default=None,
        description="Glob patterns on the tables the statement reads or writes: name (any "
        "schema) or schema.name.",
    )
    columns: NonEmptyStrings | None = Field(
        default=None,
        description="Glob patterns on the columns the statement references: column, "
        "table.column or schema.table.column.",
    )
    functions: NonEmptyStrings | None = Field(
        default=None,
        description="Glob patterns on the functions the statement calls: name (any schema) or "
        "schema.name. Compared in lower case.",
    )

    @field_validator("tables")
    @classmethod
    def _table_patterns(cls, value: list[str] | None) -> list[str] | None:
        return _check_patterns(value, "table", 2)

    @field_validator("columns")
    @classmethod
    def _column_patterns(cls, value: list[str] | None) -> list[str] | None:
        return _check_patterns(value, "column", 3)

    @field_validator("functions")
    @classmethod
    def _function_patterns(cls, value: list[str] | None) -> list[str] | None:
        checked = _check_patterns(value, "function", 2)
        return None if checked is None else [pattern.lower() for pattern in checked]


class Approvers(BaseModel):
    """Who may approve a statement held for approval."""

    model_config = MODEL_CONFIG

    groups: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        description="Groups whose members may approve. Empty: anyone the approval service "
        "accepts as an approver.",
    )
    min: int = Field(default=1, ge=1, description="How many distinct approvals are needed.")
    hold_seconds: float | None = Field(
        default=None,
        gt=0,
        description="How long the session waits for the decision (default: approvals."
        "hold_seconds in the configuration).",
    )
    expire_seconds: float | None = Field(
        default=None,
        gt=0,
        description="How long the request can be approved at all (default: approvals."
        "expire_seconds in the configuration).",
    )


class RuleObligations(BaseModel):
    """Conditions attached to statements an allow rule lets through."""

    model_config = MODEL_CONFIG

    read_only: bool = Field(
        default=False, description="Run the statement in a read-only transaction."
    )
    max_rows: int | None = Field(
        default=None, ge=1, description="Return at most this many rows to the client."
    )
    unmask: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        description="Sensitive classes this rule's identities may see in clear (email, ssn, "
        "card_number, ...; docs/masking.md lists them), or [all]. Each read under it is "
        "recorded.",
    )

    mask_with: Literal["redact", "partial", "hash", "null"] | None = Field(
        default=None,
        description="The strategy for every value masked for this rule's identities, instead "
        "of each class's own: hash gives deterministic tokens (joins and GROUP BY still work), "
        "for example for an agent.",
    )

    @field_validator("unmask")
    @classmethod
    def _known_classes(cls, value: list[str]) -> list[str]:
        names = [name.strip().lower() for name in value]
        for name in names:
            if name != "all":
                parse_class(name)  # raises ValueError naming the known classes
        return names


class Rule(BaseModel):
    """A statement rule."""

    model_config = MODEL_CONFIG

    id: str = Field(description="Unique name of the rule, reported in decisions and the audit.")
    description: str = Field(default="", description="What the rule is for, for people.")
    effect: Effect = Field(description="allow, deny or require_approval.")
    match: StatementMatch = Field(
        default_factory=StatementMatch,
        description="What the rule applies to. Omitted keys match anything.",
    )
    when: str | None = Field(
        default=None,
        description="A CEL condition that must also hold (see docs/policy.md for its variables).",
    )
    reason: str | None = Field(
        default=None, description="Told to the client when the rule denies or holds a statement."
    )
    hint: str | None = Field(default=None, description="What the client can do instead.")
    obligations: RuleObligations | None = Field(
        default=None, description="For allow rules: read_only and max_rows."
    )
    approvers: Approvers | None = Field(
        default=None, description="For require_approval rules: who may approve, and how many."
    )

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        return _check_rule_id(value)

    @field_validator("when")
    @classmethod
    def _compiles(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _check_condition(value, info, STATEMENT_VARIABLES)

    @field_validator("obligations")
    @classmethod
    def _allow_only(
        cls, value: RuleObligations | None, info: ValidationInfo
    ) -> RuleObligations | None:
        effect = info.data.get("effect")
        if value is not None and effect is not None and effect != Effect.ALLOW:
            raise ValueError("only allow rules take obligations")
        return value

    @field_validator("approvers")
    @classmethod
    def _approval_only(cls, value: Approvers | None, info: ValidationInfo) -> Approvers | None:
        effect = info.data.get("effect")
        if value is not None and effect is not None and effect != Effect.REQUIRE_APPROVAL:
            raise ValueError("only require_approval rules take approvers")
        return value


class SessionRule(BaseModel):
    """A connection rule: which upstream credential a connection uses, or whether it may
    connect at all."""

    model_config = MODEL_CONFIG

    id: str = Field(description="Unique name of the rule.")
    description: str = Field(default="", description="What the rule is for, for people.")
    effect: SessionEffect = Field(
        default=SessionEffect.ALLOW, description="allow (the default) or deny."
    )
    match: ConnectionMatch = Field(
        default_factory=ConnectionMatch,
        description="Which connections the rule applies to. Omitted keys match anything.",
    )
    when: str | None = Field(
        default=None,
        description="A CEL condition that must also hold; `statement` is not available here.",
    )
    credential: str = Field(
        default="default",
        min_length=1,
        description="For allow: the target's upstream credential to connect with.",
    )
    read_only: bool = Field(
        default=False, description="For allow: open the upstream session read-only."
    )
    reason: str | None = Field(default=None, description="Told to a refused client.")
    hint: str | None = Field(default=None, description="What a refused client can do instead.")

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        return _check_rule_id(value)

    @field_validator("when")
    @classmethod
    def _compiles(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _check_condition(value, info, CONNECTION_VARIABLES)

    @model_validator(mode="after")
    def _allow_settings(self) -> SessionRule:
        if self.effect == SessionEffect.DENY:
            misplaced = sorted({"credential", "read_only"} & self.model_fields_set)
            if misplaced:
                raise ValueError(f"deny rules refuse the connection; remove {misplaced[0]}")
        return self


class TargetSettings(BaseModel):
    """Settings for one target."""

    model_config = MODEL_CONFIG

    default_effect: DefaultEffect = Field(
        description="What happens to statements on this target that no rule matches."
    )


class GuardrailOverride(BaseModel):
    """Changes to one built-in guardrail."""

    model_config = MODEL_CONFIG

    enabled: bool | None = Field(
        default=None,
        description="false: never apply it. true: apply it on every target, whatever "
        "guardrails.enabled says.",
    )
    effect: Effect | None = Field(
        default=None,
        description="deny, require_approval, or allow (the guardrail then restricts nothing).",
    )
    approvers: Approvers | None = Field(
        default=None, description="Who may approve, when the effect is require_approval."
    )
    reason: str | None = Field(default=None, description="Replaces the built-in reason.")
    hint: str | None = Field(default=None, description="Replaces the built-in hint.")


class GuardrailSettings(BaseModel):
    """The built-in guardrail pack."""

    model_config = MODEL_CONFIG

    enabled: Annotated[GuardrailMode, BeforeValidator(_mode_from_bool)] = Field(
        default="auto",
        description="auto: on for targets labelled environment: production, off elsewhere. "
        "on: every target. off: none (per-guardrail `enabled: true` still applies).",
    )
    approvers: Approvers = Field(
        default_factory=Approvers,
        description="Who approves statements a guardrail holds for approval, unless its "
        "override names other approvers.",
    )
    overrides: dict[str, GuardrailOverride] = Field(
        default_factory=dict, description="Per guardrail id: a different effect, or enabled."
    )

    @field_validator("overrides")
    @classmethod
    def _known_ids(cls, value: dict[str, GuardrailOverride]) -> dict[str, GuardrailOverride]:
        for name in value:
            if name not in GUARDRAILS:
                close = difflib.get_close_matches(name, list(GUARDRAILS), n=1)
                suggestion = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"unknown guardrail {name!r}{suggestion}")
        return value


class Policy(BaseModel):
    """A whole policy file."""

    model_config = MODEL_CONFIG

    version: Literal[1] = Field(description="Format version of the file; always 1.")
    default_effect: DefaultEffect = Field(
        default=DefaultEffect.DENY,
        description="What happens to statements no rule matches, unless the target says otherwise.",
    )
    targets: dict[str, TargetSettings] = Field(
        default_factory=dict, description="Per target name: its own default_effect."
    )
    guardrails: GuardrailSettings = Field(
        default_factory=GuardrailSettings, description="The built-in guardrail pack."
    )
    sessions: list[SessionRule] = Field(
        default_factory=list, description="Connection rules; the first that matches decides."
    )
    rules: list[Rule] = Field(default_factory=list, description="Statement rules.")

    @field_validator("targets")
    @classmethod
    def _target_names(cls, value: dict[str, TargetSettings]) -> dict[str, TargetSettings]:
        for name in value:
            if not TARGET_NAME_RE.match(name):
                raise ValueError(f"{name!r} is not a valid target name")
        return value

    @field_validator("sessions", "rules")
    @classmethod
    def _unique_ids(cls, value: list[Any], info: ValidationInfo) -> list[Any]:
        first: dict[str, int] = {}
        for index, rule in enumerate(value):
            if rule.id in first:
                raise ValueError(
                    f"{info.field_name}[{first[rule.id]}] and {info.field_name}[{index}] have "
                    f"the same id {rule.id!r}; each must be unique"
                )
            first[rule.id] = index
        return value

    @model_validator(mode="after")
    def _ids_unique_across_sections(self) -> Policy:
        session_ids = {rule.id: index for index, rule in enumerate(self.sessions)}
        for index, rule in enumerate(self.rules):
            if rule.id in session_ids:
                raise ValueError(
                    f"sessions[{session_ids[rule.id]}] and rules[{index}] have the same id "
                    f"{rule.id!r}; each must be unique"
                )
        return self


def _check_condition(
    value: str | None, info: ValidationInfo, variables: frozenset[str]
) -> str | None:
    if value is None:
        return None
    rule_id = info.data.get("id", "?")
    try:
        compile_condition(value, variables)
    except ConditionError as exc:
        raise ValueError(f"rule {rule_id!r}: invalid condition: {exc}") from None
    return value


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema of the policy file, for editors and validators."""
    schema = Policy.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}

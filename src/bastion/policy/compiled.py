"""Rules compiled for deciding: checks built, conditions compiled, decisions made up front.

This module turns the validated policy model into the immutable structures the engine walks
on every uncached decision: each rule's connection and statement checks, its condition, and
the Decision it gives when it is the one that counts (built once, so deciding allocates
nothing for it). It decides nothing itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from bastion.pipeline.context import ConnectionContext
from bastion.pipeline.decision import (
    NO_OBLIGATIONS,
    Allow,
    Decision,
    Deny,
    Obligations,
    RefuseSession,
    RequireApproval,
    SessionDecision,
    SessionPlan,
)
from bastion.policy.cel import (
    CONNECTION_VARIABLES,
    STATEMENT_VARIABLES,
    Condition,
    compile_condition,
)
from bastion.policy.guardrails import GUARDRAILS, Guardrail
from bastion.policy.match import Check, connection_checks, statement_checks
from bastion.policy.model import (
    Approvers,
    Effect,
    Policy,
    Rule,
    SessionEffect,
    SessionRule,
)
from bastion.sql.statement import StatementInfo


@dataclass(frozen=True, slots=True)
class CompiledRule:
    id: str
    effect: Effect
    description: str
    connection: tuple[Check[ConnectionContext], ...]
    statement: tuple[Check[StatementInfo], ...]
    condition: Condition | None
    decision: Decision  # what the rule decides when it is the one that counts
    obligations: Obligations


@dataclass(frozen=True, slots=True)
class CompiledSessionRule:
    id: str
    effect: SessionEffect
    description: str
    connection: tuple[Check[ConnectionContext], ...]
    condition: Condition | None
    decision: SessionDecision


@dataclass(frozen=True, slots=True)
class CompiledGuardrail:
    guardrail: Guardrail
    effect: Effect
    forced: bool | None  # the override's `enabled`, if set
    decision: Decision | None  # None when the effect is allow: it restricts nothing


def compile_rule(rule: Rule) -> CompiledRule:
    obligations = NO_OBLIGATIONS
    decision: Decision
    if rule.effect == Effect.ALLOW:
        if rule.obligations is not None:
            obligations = Obligations(
                rule.obligations.read_only,
                rule.obligations.max_rows,
                frozenset(rule.obligations.unmask),
                rule.obligations.mask_with,
            )
        decision = Allow(rule.id, obligations)
    elif rule.effect == Effect.DENY:
        decision = Deny(rule.id, rule.reason or f"denied by policy rule {rule.id}", rule.hint)
    else:
        approvers = rule.approvers or Approvers()
        decision = _require_approval(
            rule.id, rule.reason or f"policy rule {rule.id} requires approval", approvers
        )
    return CompiledRule(
        id=rule.id,
        effect=rule.effect,
        description=rule.description,
        connection=connection_checks(rule.match),
        statement=statement_checks(rule.match, strict=rule.effect == Effect.ALLOW),
        condition=None if rule.when is None else compile_condition(rule.when, STATEMENT_VARIABLES),
        decision=decision,
        obligations=obligations,
    )


def _require_approval(rule: str, reason: str, approvers: Approvers) -> RequireApproval:
    return RequireApproval(
        rule,
        reason,
        tuple(approvers.groups),
        approvers.min,
        hold_seconds=approvers.hold_seconds,
        expire_seconds=approvers.expire_seconds,
    )


def compile_session_rule(rule: SessionRule) -> CompiledSessionRule:
    decision: SessionDecision
    if rule.effect == SessionEffect.DENY:
        decision = RefuseSession(
            rule.id, rule.reason or f"connection refused by policy rule {rule.id}", rule.hint
        )
    else:
        decision = SessionPlan(rule.id, rule.credential, rule.read_only)
    return CompiledSessionRule(
        id=rule.id,
        effect=rule.effect,
        description=rule.description,
        connection=connection_checks(rule.match),
        condition=None if rule.when is None else compile_condition(rule.when, CONNECTION_VARIABLES),
        decision=decision,
    )


def compile_guardrails(policy: Policy) -> tuple[CompiledGuardrail, ...]:
    settings = policy.guardrails
    compiled = []
    for guardrail in GUARDRAILS.values():
        override = settings.overrides.get(guardrail.id)
        effect = Effect(guardrail.default_effect)
        if override is not None and override.effect is not None:
            effect = override.effect
        reason = (override.reason if override else None) or guardrail.reason
        hint = (override.hint if override else None) or guardrail.hint
        rule = f"guardrail.{guardrail.id}"
        decision: Decision | None = None
        if effect == Effect.DENY:
            decision = Deny(rule, reason, hint)
        elif effect == Effect.REQUIRE_APPROVAL:
            approvers = (override.approvers if override else None) or settings.approvers
            decision = _require_approval(rule, reason, approvers)
        compiled.append(
            CompiledGuardrail(guardrail, effect, override.enabled if override else None, decision)
        )
    return tuple(compiled)

"""PolicyEngine: decides connections and statements from one loaded policy, with a cache.

This module owns precedence (deny beats require_approval beats allow; a statement no rule
matches gets the target's default effect; guardrails and the built-in refusal of statements
the analyzer did not understand are applied on top), how a message of several statements and
statements nested in others are decided as a whole, and the decision cache. An engine is
immutable once built: a new policy means a new engine (see `reload`). Any unexpected error
while deciding denies, and is logged; it never lets a statement through.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from bastion.pipeline.context import ConnectionContext
from bastion.pipeline.decision import (
    SESSION_DEFAULT,
    Allow,
    Decision,
    Deny,
    RefuseSession,
    SessionDecision,
)
from bastion.policy.cel import FieldUse, merge_field_use
from bastion.policy.combine import EMPTY_ALLOW, merge_obligations, most_restrictive
from bastion.policy.compiled import (
    CompiledGuardrail,
    CompiledRule,
    compile_guardrails,
    compile_rule,
    compile_session_rule,
)
from bastion.policy.context import Activation, connection_values
from bastion.policy.explain import (
    ConditionResult,
    Explanation,
    GuardrailTrace,
    RuleTrace,
    SessionTrace,
    StatementTrace,
)
from bastion.policy.match import CheckResult, all_pass, run_checks
from bastion.policy.model import DefaultEffect, Effect, Policy
from bastion.sql.statement import StatementInfo

log = logging.getLogger(__name__)

DEFAULT_CACHE_SIZE = 16384
MAX_NESTING = 16
PRODUCTION_LABEL = ("environment", "production")

ANALYSIS_RULE = "analysis.unknown"
DEFAULT_RULE = "default"
ERROR_RULE = "policy.error"
NESTING_RULE = "analysis.nesting"

ANALYSIS_HINT = (
    "Bastion forwards only statements it can parse and classify. Check the syntax, or send "
    "the statement in a simpler form."
)
POLICY_ERROR = Deny(
    ERROR_RULE,
    "the policy could not be evaluated for this statement",
    "Try again; if it persists, tell the Bastion administrators.",
)
SESSION_POLICY_ERROR = RefuseSession(
    ERROR_RULE,
    "the policy could not be evaluated for this connection",
    "Try again; if it persists, tell the Bastion administrators.",
)
DEFAULT_ALLOW = Allow(DEFAULT_RULE)

Clock = Callable[[], float]  # seconds since the epoch, like time.time


# -- the engine ---------------------------------------------------------------------------


class _Scope:
    """What one decide call needs about its connection, computed once per call."""

    __slots__ = ("_values", "context", "default", "guardrails", "now", "rules", "uses")

    def __init__(
        self,
        context: ConnectionContext,
        now: float,
        rules: tuple[CompiledRule, ...],
        guardrails: tuple[CompiledGuardrail, ...],
        default: DefaultEffect,
        uses: FieldUse,
    ) -> None:
        self.context = context
        self.now = now
        self.rules = rules
        self.guardrails = guardrails
        self.default = default
        self.uses = uses
        self._values: dict[str, dict[str, Any]] | None = None

    def activation(self, statement: StatementInfo | None) -> Activation:
        if self._values is None:
            self._values = connection_values(self.context, self.now)
        return Activation(self._values, statement, self.uses)


class PolicyEngine:
    """Decides with one policy. Implements the pipeline's `Decider`.

    `version` identifies the policy (the reload counter); `clock` returns the current time in
    seconds since the epoch and exists so tests can fix the time.
    """

    def __init__(
        self,
        policy: Policy,
        *,
        version: int = 1,
        clock: Clock = time.time,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self.policy = policy
        self.version = version
        self._clock = clock
        self._cache_size = cache_size
        self._cache: OrderedDict[Hashable, tuple[tuple[StatementInfo, ...], Decision]] = (
            OrderedDict()
        )
        self._rules = tuple(compile_rule(rule) for rule in policy.rules)
        self._sessions = tuple(compile_session_rule(rule) for rule in policy.sessions)
        self._guardrails = compile_guardrails(policy)
        self._statement_uses = merge_field_use(
            r.condition.uses for r in self._rules if r.condition is not None
        )
        self._session_uses = merge_field_use(
            r.condition.uses for r in self._sessions if r.condition is not None
        )
        self._targets = {name: s.default_effect for name, s in policy.targets.items()}
        mode = policy.guardrails.enabled
        self._guardrails_on = self._active_guardrails(mode == "on")
        self._guardrails_auto_prod = self._active_guardrails(mode in ("on", "auto"))
        time_use = self._statement_uses.get("time", frozenset())
        source_use = self._statement_uses.get("source", frozenset())
        # Cached decisions are keyed by the hour (or minute) they were made in, since the
        # epoch: enough for conditions on time.hour, time.weekday and time.date.
        self._slot_seconds = 60 if time_use is None or "minute" in time_use else 3600
        self._port_in_key = source_use is None or "port" in source_use

    # -- Decider --------------------------------------------------------------------------

    def connect(self, context: ConnectionContext) -> SessionDecision:
        """The first session rule that matches decides; none: the default credential."""
        try:
            return self._connect(context, self._clock(), None)
        except Exception:
            log.exception("session policy failed", extra={"fields": {"rule": ERROR_RULE}})
            return SESSION_POLICY_ERROR

    def decide(self, context: ConnectionContext, statements: Sequence[StatementInfo]) -> Decision:
        """The decision for one client message, its statements decided as a whole."""
        try:
            return self._decide_cached(context, statements)
        except Exception:
            log.exception("statement policy failed", extra={"fields": {"rule": ERROR_RULE}})
            return POLICY_ERROR

    def _decide_cached(
        self, context: ConnectionContext, statements: Sequence[StatementInfo]
    ) -> Decision:
        now = self._clock()
        batch = statements if isinstance(statements, tuple) else tuple(statements)
        identity = context.identity
        key = (
            self.version,
            int(now // self._slot_seconds),
            identity.name,
            identity.groups,
            identity.kind,
            identity.auth_method,
            context.source_ip,
            context.source_port if self._port_in_key else 0,
            context.tls_version,
            context.target,
            tuple(context.target_labels.items()),
            batch[0].text if len(batch) == 1 else tuple(s.text for s in batch),
        )
        cache = self._cache
        entry = cache.get(key)
        # Keyed by text, checked by value: two analyses of one text are the same objects when
        # the analyzer's own cache returns them, which makes this comparison nearly free.
        if entry is not None and entry[0] == batch:
            cache.move_to_end(key)
            return entry[1]
        decision = self._decide(context, batch, now, None)
        cache[key] = (batch, decision)
        if len(cache) > self._cache_size:
            cache.popitem(last=False)
        return decision

    # -- explain --------------------------------------------------------------------------

    def explain(
        self, context: ConnectionContext, statements: Sequence[StatementInfo]
    ) -> Explanation:
        """Decide like `decide` (without the cache) and say why, rule by rule."""
        now = self._clock()
        session_traces: list[RuleTrace] = []
        session = self._connect(context, now, session_traces)
        traces: list[StatementTrace] = []
        decision = self._decide(context, tuple(statements), now, traces)
        return Explanation(
            decision=decision,
            session=SessionTrace(session, tuple(session_traces)),
            statements=tuple(traces),
            variables=connection_values(context, now),
            policy_version=self.version,
        )

    @property
    def cache_size(self) -> int:
        return len(self._cache)

    # -- internals ------------------------------------------------------------------------

    def _active_guardrails(self, pack_on: bool) -> tuple[CompiledGuardrail, ...]:
        return tuple(
            g
            for g in self._guardrails
            if g.decision is not None and (pack_on if g.forced is None else g.forced)
        )

    def _guardrails_for(self, context: ConnectionContext) -> tuple[CompiledGuardrail, ...]:
        key, value = PRODUCTION_LABEL
        if context.target_labels.get(key) == value:
            return self._guardrails_auto_prod
        return self._guardrails_on

    def _connect(
        self, context: ConnectionContext, now: float, traces: list[RuleTrace] | None
    ) -> SessionDecision:
        activation: Activation | None = None
        first: SessionDecision | None = None
        for rule in self._sessions:
            if traces is None:
                if not all_pass(rule.connection, context):
                    continue
                checks: tuple[CheckResult, ...] = ()
            else:
                checks = run_checks(rule.connection, context)
                if not all(check.ok for check in checks):
                    traces.append(RuleTrace(rule.id, rule.effect, False, checks))
                    continue
            decision: SessionDecision | None = rule.decision
            condition: ConditionResult | None = None
            if rule.condition is not None:
                if activation is None:
                    values = connection_values(context, now)
                    activation = Activation(values, None, self._session_uses)
                outcome = activation.evaluate(rule.condition)
                source = rule.condition.source
                if outcome.error is not None:
                    # A session rule picks a credential or refuses: skipping it could hand out
                    # a more powerful credential, so an unevaluable condition refuses.
                    condition = ConditionResult(source, None, outcome.error, True)
                    decision = RefuseSession(
                        rule.id,
                        f"the condition of policy rule {rule.id} could not be evaluated",
                        "Tell the Bastion administrators.",
                    )
                else:
                    condition = ConditionResult(source, outcome.value, None, bool(outcome.value))
                    if not outcome.value:
                        decision = None
            if traces is None:
                if decision is not None:
                    return decision
                continue
            matched = decision is not None
            traces.append(
                RuleTrace(rule.id, rule.effect, matched, checks, condition, rule.description)
            )
            if first is None and decision is not None:
                first = decision
        return first if first is not None else SESSION_DEFAULT

    def _decide(
        self,
        context: ConnectionContext,
        statements: tuple[StatementInfo, ...],
        now: float,
        traces: list[StatementTrace] | None,
    ) -> Decision:
        if not statements:
            return EMPTY_ALLOW
        rules = (
            self._rules
            if traces is not None
            else tuple(rule for rule in self._rules if all_pass(rule.connection, context))
        )
        scope = _Scope(
            context,
            now,
            rules,
            self._guardrails_for(context),
            self._targets.get(context.target, self.policy.default_effect),
            self._statement_uses,
        )
        decisions = [self._statement(scope, s, 0, traces) for s in statements]
        return most_restrictive(decisions)

    def _statement(
        self,
        scope: _Scope,
        statement: StatementInfo,
        depth: int,
        traces: list[StatementTrace] | None,
    ) -> Decision:
        """The decision for one statement and everything nested in it."""
        analysis = _not_understood(statement, depth)
        rule_traces: list[RuleTrace] | None = [] if traces is not None else None
        default: Decision | None = None
        if analysis is not None:
            own: Decision = analysis
        else:
            own, default = self._rules_decision(scope, statement, rule_traces)
            restrictions = [
                g.decision
                for g in scope.guardrails
                if g.decision is not None and g.guardrail.applies(statement)
            ]
            if restrictions:
                own = most_restrictive([own, *restrictions])
        inner_traces: list[StatementTrace] | None = [] if traces is not None else None
        parts = [own]
        if analysis is None:
            parts += [self._statement(scope, s, depth + 1, inner_traces) for s in statement.inner]
        decision = most_restrictive(parts)
        if traces is not None:
            traces.append(
                StatementTrace(
                    statement=statement,
                    decision=decision,
                    analysis=analysis.reason if isinstance(analysis, Deny) else None,
                    rules=tuple(rule_traces or ()),
                    guardrails=self._guardrail_traces(scope, statement),
                    default=default,
                    inner=tuple(inner_traces or ()),
                )
            )
        return decision

    def _rules_decision(
        self, scope: _Scope, statement: StatementInfo, traces: list[RuleTrace] | None
    ) -> tuple[Decision, Decision | None]:
        """The user rules' decision, and the default decision when it was the one used."""
        activation: Activation | None = None
        first_deny: Decision | None = None
        approvals: list[Decision] = []
        allows: list[CompiledRule] = []
        for rule in scope.rules:
            if traces is None:
                if not all_pass(rule.statement, statement):
                    continue
                checks: tuple[CheckResult, ...] = ()
            else:
                checks = run_checks(rule.connection, scope.context) + run_checks(
                    rule.statement, statement
                )
                if not all(check.ok for check in checks):
                    traces.append(
                        RuleTrace(rule.id, rule.effect, False, checks, None, rule.description)
                    )
                    continue
            condition: ConditionResult | None = None
            if rule.condition is not None:
                if activation is None:
                    activation = scope.activation(statement)
                outcome = activation.evaluate(rule.condition)
                # Fail closed: an unevaluable condition makes a restricting rule apply and an
                # allowing rule not.
                holds = (
                    bool(outcome.value) if outcome.error is None else rule.effect != Effect.ALLOW
                )
                condition = ConditionResult(
                    rule.condition.source, outcome.value, outcome.error, holds
                )
                if not holds:
                    if traces is not None:
                        traces.append(
                            RuleTrace(
                                rule.id, rule.effect, False, checks, condition, rule.description
                            )
                        )
                    continue
            if traces is not None:
                traces.append(
                    RuleTrace(rule.id, rule.effect, True, checks, condition, rule.description)
                )
            if rule.effect == Effect.DENY:
                if first_deny is None:
                    first_deny = rule.decision
                if traces is None:
                    break  # nothing beats a deny
            elif rule.effect == Effect.REQUIRE_APPROVAL:
                approvals.append(rule.decision)
            else:
                allows.append(rule)
        if first_deny is not None:
            return first_deny, None
        if approvals:
            return most_restrictive(approvals), None
        if len(allows) == 1:
            return allows[0].decision, None
        if allows:
            return (
                Allow(allows[0].id, merge_obligations([rule.obligations for rule in allows])),
                None,
            )
        default = self._default_decision(scope, statement)
        return default, default

    def _default_decision(self, scope: _Scope, statement: StatementInfo) -> Decision:
        if scope.default == DefaultEffect.ALLOW:
            return DEFAULT_ALLOW
        return Deny(
            DEFAULT_RULE,
            f"no policy rule allows this {statement.kind} statement",
            "Ask the Bastion administrators if you need it.",
        )

    def _guardrail_traces(
        self, scope: _Scope, statement: StatementInfo
    ) -> tuple[GuardrailTrace, ...]:
        active_ids = {g.guardrail.id for g in scope.guardrails}
        production = scope.context.target_labels.get(PRODUCTION_LABEL[0]) == PRODUCTION_LABEL[1]
        mode = self.policy.guardrails.enabled
        traces = []
        for compiled in self._guardrails:
            guardrail = compiled.guardrail
            active = guardrail.id in active_ids
            if compiled.forced is not None:
                why = f"guardrails.overrides.{guardrail.id}.enabled is {compiled.forced}".lower()
            elif compiled.decision is None:
                why = "its effect is allow: it restricts nothing"
            elif mode == "auto":
                why = (
                    "target is labelled environment: production"
                    if production
                    else "guardrails are on only for targets labelled environment: production"
                )
            else:
                why = f"guardrails.enabled is {mode}"
            traces.append(
                GuardrailTrace(
                    guardrail.id, compiled.effect, active, guardrail.applies(statement), why
                )
            )
        return tuple(traces)


def _not_understood(statement: StatementInfo, depth: int) -> Deny | None:
    """The built-in refusal of statements the analyzer could not parse or classify."""
    if depth >= MAX_NESTING and statement.inner:
        return Deny(NESTING_RULE, "the statement nests other statements too deeply", None)
    if statement.kind == "unknown":
        detail = f": {statement.error}" if statement.error else ""
        return Deny(
            ANALYSIS_RULE, f"Bastion could not analyze this statement{detail}", ANALYSIS_HINT
        )
    if "unclassified" in statement.flags:
        return Deny(ANALYSIS_RULE, "Bastion could not classify this statement", ANALYSIS_HINT)
    return None

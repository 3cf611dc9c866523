"""Explanations: why the policy decided what it did, for people (text) and machines (JSON).

The engine fills these traces with the same checks and conditions it decides with (see
`PolicyEngine.explain`); this module only holds them and renders them. Nothing here decides.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bastion.pipeline.decision import (
    Allow,
    Decision,
    Deny,
    RefuseSession,
    RequireApproval,
    SessionDecision,
    SessionPlan,
)
from bastion.policy.match import CheckResult
from bastion.sql.statement import StatementInfo


@dataclass(frozen=True, slots=True)
class ConditionResult:
    source: str
    value: bool | None
    error: str | None
    holds: bool  # after the fail-closed rule


@dataclass(frozen=True, slots=True)
class RuleTrace:
    id: str
    effect: str
    matched: bool
    checks: tuple[CheckResult, ...]
    condition: ConditionResult | None = None
    description: str = ""

    @property
    def misses(self) -> tuple[str, ...]:
        """What kept the rule from matching, one phrase per failed check or condition."""
        every = self.effect == "allow"
        found = [_miss_text(check, every) for check in self.checks if not check.ok]
        if self.condition is not None and not self.condition.holds:
            found.append(_condition_text(self.condition))
        return tuple(found)

    @property
    def near_miss(self) -> bool:
        return not self.matched and len(self.misses) == 1


@dataclass(frozen=True, slots=True)
class GuardrailTrace:
    id: str
    effect: str
    active: bool
    matched: bool
    why: str  # why it is active or not


@dataclass(frozen=True, slots=True)
class StatementTrace:
    statement: StatementInfo
    decision: Decision  # for this statement and its inner statements together
    analysis: str | None  # set when the statement was refused as not understood
    rules: tuple[RuleTrace, ...]
    guardrails: tuple[GuardrailTrace, ...]
    default: Decision | None  # set when no rule matched and the default effect applied
    inner: tuple[StatementTrace, ...] = ()


@dataclass(frozen=True, slots=True)
class SessionTrace:
    decision: SessionDecision
    rules: tuple[RuleTrace, ...]


@dataclass(frozen=True, slots=True)
class Explanation:
    """Everything behind one decision: the session, each statement, and the variables."""

    decision: Decision
    session: SessionTrace
    statements: tuple[StatementTrace, ...]
    variables: dict[str, Any]  # the CEL connection variables
    policy_version: int


_EVERY_FIELDS = frozenset({"tables", "columns", "functions"})


# -- rendering ----------------------------------------------------------------------------


def decision_dict(decision: Decision | SessionDecision) -> dict[str, Any]:
    if isinstance(decision, Allow):
        return {
            "effect": "allow",
            "rule": decision.rule,
            "obligations": {
                "read_only": decision.obligations.read_only,
                "max_rows": decision.obligations.max_rows,
            },
        }
    if isinstance(decision, Deny):
        return {
            "effect": "deny",
            "rule": decision.rule,
            "reason": decision.reason,
            "hint": decision.hint,
        }
    if isinstance(decision, RequireApproval):
        return {
            "effect": "require_approval",
            "rule": decision.rule,
            "reason": decision.reason,
            "approver_groups": list(decision.approver_groups),
            "min_approvals": decision.min_approvals,
        }
    if isinstance(decision, SessionPlan):
        return {
            "effect": "allow",
            "rule": decision.rule,
            "credential": decision.credential,
            "read_only": decision.read_only,
        }
    return {
        "effect": "deny",
        "rule": decision.rule,
        "reason": decision.reason,
        "hint": decision.hint,
    }


def statement_dict(statement: StatementInfo) -> dict[str, Any]:
    """The analyzer's findings, as JSON-ready values."""
    copy = statement.copy
    return {
        "text": statement.text,
        "kind": statement.kind,
        "error": statement.error,
        "object_type": statement.object_type,
        "tables_read": [t.qualified for t in statement.tables_read],
        "tables_written": [t.qualified for t in statement.tables_written],
        "columns": [
            {
                "name": c.name,
                "clause": c.clause,
                "table": c.table.qualified if c.table else None,
            }
            for c in statement.columns
        ],
        "functions": list(statement.functions),
        "has_where": statement.has_where,
        "where_always_true": statement.where_always_true,
        "modifying_cte": statement.modifying_cte,
        "copy": None
        if copy is None
        else {
            "direction": copy.direction,
            "target": copy.target,
            "path": copy.path,
            "query": copy.query,
        },
        "dynamic_sql": statement.dynamic_sql,
        "flags": sorted(statement.flags),
        "fingerprint": statement.fingerprint,
    }


def _rule_dict(trace: RuleTrace) -> dict[str, Any]:
    result: dict[str, Any] = {
        "id": trace.id,
        "effect": trace.effect,
        "matched": trace.matched,
        "checks": [
            {"field": c.field, "ok": c.ok, "patterns": list(c.patterns), "actual": c.actual}
            for c in trace.checks
        ],
    }
    if trace.condition is not None:
        result["condition"] = {
            "source": trace.condition.source,
            "value": trace.condition.value,
            "error": trace.condition.error,
            "holds": trace.condition.holds,
        }
    if not trace.matched:
        result["misses"] = list(trace.misses)
    return result


def _statement_trace_dict(trace: StatementTrace) -> dict[str, Any]:
    return {
        "statement": statement_dict(trace.statement),
        "decision": decision_dict(trace.decision),
        "analysis": trace.analysis,
        "rules": [_rule_dict(rule) for rule in trace.rules],
        "guardrails": [
            {
                "id": g.id,
                "effect": g.effect,
                "active": g.active,
                "matched": g.matched,
                "why": g.why,
            }
            for g in trace.guardrails
        ],
        "default": None if trace.default is None else decision_dict(trace.default),
        "inner": [_statement_trace_dict(inner) for inner in trace.inner],
    }


def explanation_dict(explanation: Explanation) -> dict[str, Any]:
    return {
        "decision": decision_dict(explanation.decision),
        "policy_version": explanation.policy_version,
        "session": {
            "decision": decision_dict(explanation.session.decision),
            "rules": [_rule_dict(rule) for rule in explanation.session.rules],
        },
        "variables": explanation.variables,
        "statements": [_statement_trace_dict(trace) for trace in explanation.statements],
    }


def render_json(explanation: Explanation) -> str:
    return json.dumps(explanation_dict(explanation), indent=2, default=str)


def render_text(explanation: Explanation) -> str:
    lines = [f"decision: {_decision_line(explanation.decision)}"]
    lines += _decision_details(explanation.decision, "  ")
    lines.append("")
    lines.append(f"session: {_decision_line(explanation.session.decision)}")
    lines += _rule_lines(explanation.session.rules, "  ")
    for index, trace in enumerate(explanation.statements, start=1):
        lines.append("")
        lines += _statement_lines(trace, f"statement {index}", "")
    return "\n".join(lines) + "\n"


def _decision_line(decision: Decision | SessionDecision) -> str:
    if isinstance(decision, Allow):
        obligations = []
        if decision.obligations.read_only:
            obligations.append("read-only")
        if decision.obligations.max_rows is not None:
            obligations.append(f"at most {decision.obligations.max_rows} rows")
        extra = f" ({', '.join(obligations)})" if obligations else ""
        return f"ALLOW by {decision.rule}{extra}"
    if isinstance(decision, Deny):
        return f"DENY by {decision.rule}"
    if isinstance(decision, RequireApproval):
        groups = ", ".join(decision.approver_groups) or "any approver"
        return (
            f"REQUIRE APPROVAL by {decision.rule} "
            f"({decision.min_approvals} approval(s) from {groups})"
        )
    if isinstance(decision, SessionPlan):
        mode = ", read-only" if decision.read_only else ""
        return f"CONNECT by {decision.rule} (credential {decision.credential}{mode})"
    assert isinstance(decision, RefuseSession)
    return f"REFUSE by {decision.rule}"


def _decision_details(decision: Decision | SessionDecision, indent: str) -> list[str]:
    lines = []
    reason = getattr(decision, "reason", None)
    hint = getattr(decision, "hint", None)
    if reason:
        lines.append(f"{indent}reason: {reason}")
    if hint:
        lines.append(f"{indent}hint: {hint}")
    return lines


def _statement_lines(trace: StatementTrace, title: str, indent: str) -> list[str]:
    statement = trace.statement
    lines = [f"{indent}{title}: {statement.text}"]
    inner_indent = indent + "  "
    facts = statement_dict(statement)
    facts["columns"] = [
        f"{c['table']}.{c['name']}" if c["table"] else c["name"] for c in facts["columns"]
    ]
    shown = [
        f"{key}={_fact_text(value)}"
        for key, value in facts.items()
        if key not in ("text", "fingerprint") and value not in (None, [], False, "")
    ]
    lines.append(f"{inner_indent}analysis: {' '.join(shown)}")
    lines.append(f"{inner_indent}decision: {_decision_line(trace.decision)}")
    lines += _decision_details(trace.decision, inner_indent + "  ")
    if trace.analysis is not None:
        lines.append(f"{inner_indent}not analyzed: {trace.analysis}")
    lines += _rule_lines(trace.rules, inner_indent)
    matched_guardrails = [g for g in trace.guardrails if g.matched]
    if matched_guardrails:
        lines.append(f"{inner_indent}guardrails that apply to this statement:")
        for guardrail in matched_guardrails:
            state = "active" if guardrail.active else "inactive"
            lines.append(
                f"{inner_indent}  {guardrail.id} ({guardrail.effect}, {state}: {guardrail.why})"
            )
    if trace.default is not None:
        lines.append(
            f"{inner_indent}no rule matched: default effect {_decision_line(trace.default)}"
        )
    for number, inner in enumerate(trace.inner, start=1):
        lines += _statement_lines(inner, f"inner statement {number}", inner_indent)
    return lines


def _rule_lines(rules: Sequence[RuleTrace], indent: str) -> list[str]:
    lines = []
    matched = [rule for rule in rules if rule.matched]
    near = [rule for rule in rules if rule.near_miss]
    others = len(rules) - len(matched) - len(near)
    if matched:
        lines.append(f"{indent}matched rules:")
        for rule in matched:
            why = "; ".join(_hit_text(check) for check in rule.checks) or "matches everything"
            if rule.condition is not None:
                why += f"; {_condition_text(rule.condition)}"
            lines.append(f"{indent}  + {rule.id} ({rule.effect}): {why}")
    if near:
        lines.append(f"{indent}near misses (one thing differs):")
        for rule in near:
            lines.append(f"{indent}  - {rule.id} ({rule.effect}): {rule.misses[0]}")
    if others:
        lines.append(f"{indent}{others} other rule(s) do not apply")
    return lines


def _fact_text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(_fact_text(item) for item in value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{v}" for k, v in value.items() if v is not None) + "}"
    return str(value)


def _hit_text(check: CheckResult) -> str:
    return f"{check.field} {_fact_text(check.actual)!s} matches {list(check.patterns)}"


def _miss_text(check: CheckResult, every: bool) -> str:
    actual = check.actual
    patterns = list(check.patterns)
    if isinstance(actual, list) and not actual:
        return f"{check.field}: the statement has none, the rule names {patterns}"
    if every and check.field in _EVERY_FIELDS:
        # Allow rules need every table (column, function) to match, not just one.
        return f"{check.field}: not every one of {_fact_text(actual)} matches {patterns}"
    return f"{check.field}: {_fact_text(actual)} does not match {patterns}"


def _condition_text(condition: ConditionResult) -> str:
    if condition.error is not None:
        verdict = "counts as matched" if condition.holds else "counts as not matched"
        return f"when {condition.source!r} failed ({condition.error}), which {verdict}"
    return f"when {condition.source!r} is {str(condition.value).lower()}"

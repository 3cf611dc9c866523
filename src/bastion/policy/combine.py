"""Combining decisions: several rules, guardrails, statements or nested statements into one.

The rule everywhere is "all of them must hold": any deny wins (the first one, so the client
hears about the first problem), else every approval is needed at once, else the statement is
allowed with every obligation.
"""

from __future__ import annotations

from collections.abc import Sequence

from bastion.pipeline.decision import (
    NO_OBLIGATIONS,
    Allow,
    Decision,
    Deny,
    Obligations,
    RequireApproval,
)

APPROVAL_CONFLICT_RULE = "approval.conflict"
EMPTY_RULE = "empty"
EMPTY_ALLOW = Allow(EMPTY_RULE)  # a message without statements


def merge_obligations(allows: Sequence[Obligations]) -> Obligations:
    """read_only if any asks for it; the smallest max_rows; only what every one unmasks."""
    read_only = any(o.read_only for o in allows)
    limits = [o.max_rows for o in allows if o.max_rows is not None]
    max_rows = min(limits) if limits else None
    unmask = _common_unmask([o.unmask for o in allows])
    strategies = [o.mask_with for o in allows if o.mask_with is not None]
    mask_with = min(strategies, key=_SHOWS_LEAST.index) if strategies else None
    if not read_only and max_rows is None and not unmask and mask_with is None:
        return NO_OBLIGATIONS
    return Obligations(read_only, max_rows, unmask, mask_with)


# Masking strategies, from the one that shows least to the one that shows most.
_SHOWS_LEAST = ("null", "redact", "hash", "partial")


def _common_unmask(grants: Sequence[frozenset[str]]) -> frozenset[str]:
    if not grants:
        return frozenset()
    common: frozenset[str] | None = None
    for grant in grants:
        if "all" in grant:
            continue  # the universal grant takes nothing away
        common = grant if common is None else common & grant
    return frozenset({"all"}) if common is None else common


def most_restrictive(decisions: Sequence[Decision]) -> Decision:
    """The decision for several decisions that must all hold: any deny wins (the first one);
    else every approval is needed; else allow with every obligation."""
    if len(decisions) == 1:
        return decisions[0]
    if not decisions:
        return EMPTY_ALLOW
    approvals: list[RequireApproval] = []
    allows: list[Allow] = []
    for decision in decisions:
        if isinstance(decision, Deny):
            return decision
        if isinstance(decision, RequireApproval):
            approvals.append(decision)
        else:
            allows.append(decision)
    if approvals:
        return _merge_approvals(approvals)
    rules = list(dict.fromkeys(allow.rule for allow in allows))
    return Allow(",".join(rules), merge_obligations([allow.obligations for allow in allows]))


def _merge_approvals(approvals: Sequence[RequireApproval]) -> Decision:
    unique = list(dict.fromkeys(approvals))
    if len(unique) == 1:
        return unique[0]
    # One approval must satisfy every requirement: an approver from a group that all of them
    # accept (no groups = any approver), as many approvals as the strictest asks for.
    groups: list[str] | None = None
    for approval in unique:
        if not approval.approver_groups:
            continue
        if groups is None:
            groups = list(approval.approver_groups)
        else:
            groups = [group for group in groups if group in approval.approver_groups]
    if groups is not None and not groups:
        return Deny(
            APPROVAL_CONFLICT_RULE,
            "these statements need approval from different groups ("
            + "; ".join(f"{a.rule}: {', '.join(a.approver_groups)}" for a in unique)
            + ")",
            "Send the statements one at a time.",
        )
    reasons = list(dict.fromkeys(approval.reason for approval in unique))
    return RequireApproval(
        unique[0].rule,
        "; ".join(reasons),
        tuple(groups or ()),
        max(approval.min_approvals for approval in unique),
    )

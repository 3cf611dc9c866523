"""Checks of a policy against the configuration it will run with.

A policy file is valid on its own, but it can still name things the configuration does not
have: a session rule choosing an upstream credential a target lacks (connections would fail),
or per-target settings for a target that does not exist (harmless, probably a typo). This
module finds both; it never changes either file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bastion.policy.match import GlobSet
from bastion.policy.model import Policy, SessionEffect


@dataclass(frozen=True, slots=True)
class TargetFacts:
    """What the policy needs to know about one configured target."""

    name: str
    labels: Mapping[str, str]
    credentials: frozenset[str]


@dataclass(frozen=True, slots=True)
class Findings:
    errors: tuple[str, ...]
    warnings: tuple[str, ...]


def check_against_targets(policy: Policy, targets: Sequence[TargetFacts]) -> Findings:
    errors: list[str] = []
    warnings: list[str] = []
    for index, rule in enumerate(policy.sessions):
        if rule.effect == SessionEffect.DENY:
            continue
        names = GlobSet(rule.match.targets) if rule.match.targets is not None else None
        labels = {k: GlobSet([v]) for k, v in (rule.match.target_labels or {}).items()}
        for target in targets:
            if names is not None and not names(target.name):
                continue
            if any(
                key not in target.labels or not glob(target.labels[key])
                for key, glob in labels.items()
            ):
                continue
            if rule.credential not in target.credentials:
                errors.append(
                    f"sessions[{index}] ({rule.id}): target {target.name!r} has no upstream "
                    f"credential {rule.credential!r}"
                )
    known = {target.name for target in targets}
    for name in policy.targets:
        if name not in known:
            warnings.append(f"targets.{name}: no target of that name is configured")
    return Findings(tuple(errors), tuple(warnings))

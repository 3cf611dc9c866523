"""Policy: who may connect and run what, decided from a YAML policy file.

`load_policy` reads a file into a `Policy`; `PolicyEngine` decides with it (the pipeline's
Decider); `PolicyHolder` keeps the current engine and swaps it on reload. docs/policy.md
describes the file, the CEL conditions and the built-in guardrails.
"""

from __future__ import annotations

from bastion.policy.engine import PolicyEngine
from bastion.policy.loader import load_policy, policy_from_mapping
from bastion.policy.model import Policy, policy_json_schema
from bastion.policy.reload import PolicyHolder, watch_policy

__all__ = [
    "Policy",
    "PolicyEngine",
    "PolicyHolder",
    "load_policy",
    "policy_from_mapping",
    "policy_json_schema",
    "watch_policy",
]

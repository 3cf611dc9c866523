"""Decision: the closed set of answers the decide stage may give for a client message.

The policy never writes to the wire itself; the session machine interprets the Decision.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Allow:
    """Forward the statement. `rule` names the rule that allowed it, when one did."""

    rule: str = "default"


@dataclass(frozen=True, slots=True)
class Deny:
    """Refuse the statement: it never reaches the server."""

    rule: str
    reason: str
    hint: str | None = None


Decision = Allow | Deny

ALLOW_DEFAULT = Allow()

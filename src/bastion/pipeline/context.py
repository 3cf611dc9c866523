"""ConnectionContext: the facts about one client connection that every stage may use."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from bastion.identity.directory import Identity


@dataclass(frozen=True, slots=True)
class ConnectionContext:
    """Who is connected, from where, over what, to which target. Fixed after authentication."""

    session_id: str
    identity: Identity
    source_ip: str
    source_port: int
    tls_version: str | None
    target: str
    target_labels: Mapping[str, str] = field(default_factory=dict)
    application_name: str = ""
    upstream_role: str = ""

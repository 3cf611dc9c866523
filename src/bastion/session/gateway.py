"""Gateway: the services a client session needs, assembled once by the application.

Sessions receive this object instead of reaching for globals, which keeps the protocol code
independent of how configuration, identities and pipeline stages are built.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network

from bastion.approvals.service import ApprovalService
from bastion.identity.directory import IdentityDirectory
from bastion.identity.ratelimit import AuthRateLimiter
from bastion.pipeline.stages import Analyzer, AuditSink, Decider, MaskPlanner
from bastion.session.audit_room import AuditRoom
from bastion.session.cancel import CancelRegistry
from bastion.session.pg_relay import Recording
from bastion.session.registry import SessionRegistry
from bastion.targets.runtime import TargetRuntime


@dataclass(frozen=True, slots=True)
class SessionLimits:
    startup_timeout: float = 10.0
    max_startup_packet: int = 10_000
    max_message: int = 64 << 20
    max_client_connections: int = 10_000
    write_buffer_high_water: int = 256 << 10


@dataclass(frozen=True, slots=True)
class ListenerSettings:
    host: str
    port: int
    tls_context: ssl.SSLContext | None
    require_tls: bool = False
    trust_loopback: bool = True
    # Load balancers whose PROXY protocol headers are believed; empty: none expected.
    proxy_networks: tuple[IPv4Network | IPv6Network, ...] = ()


@dataclass(slots=True)
class Gateway:
    targets: Mapping[str, TargetRuntime]
    directory: IdentityDirectory
    rate_limiter: AuthRateLimiter
    analyzer: Analyzer
    decider: Decider
    audit: AuditSink
    limits: SessionLimits
    cancel: CancelRegistry = field(default_factory=CancelRegistry)
    sessions: SessionRegistry = field(default_factory=SessionRegistry)
    approvals: ApprovalService | None = None  # None: statements needing approval are refused
    recording: Recording | None = None  # statement records beyond the normalized text
    masking: MaskPlanner | None = None  # None: results pass unmasked (masking switched off)
    audit_room: AuditRoom | None = None  # None: a full audit record refuses statements at once
    active_sessions: int = 0
    total_sessions: int = 0

"""Audit events produced by the session machine and consumed by audit sinks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    """A connection attempt's outcome, or the end of a session."""

    event: str  # "connect", "reject", "disconnect"
    session_id: str
    source_ip: str
    source_port: int
    user: str
    target: str
    outcome: str  # "ok" or the SQLSTATE of the refusal
    reason: str = ""
    auth_method: str = ""
    identity_kind: str = ""
    groups: tuple[str, ...] = ()
    tls_version: str | None = None
    proxy_peer: str | None = None  # the load balancer that reported the source address
    application_name: str = ""
    upstream_role: str = ""
    duration_ms: float | None = None
    statements: int | None = None
    bytes_from_client: int | None = None
    bytes_to_client: int | None = None


@dataclass(frozen=True, slots=True)
class StatementEvent:
    """One statement's outcome."""

    session_id: str
    user: str
    target: str
    protocol: str  # "simple", "extended" or "function"
    kind: str
    statement: str  # normalized (literals replaced), or scrubbed (detected values masked)
    fingerprint: str
    decision: str
    rule: str
    outcome: str  # "ok", "error", "denied", "skipped"
    sqlstate: str = ""
    command_tag: str = ""
    rows: int | None = None
    duration_ms: float = 0.0  # from forwarding to completion: the server's time and the network
    decide_ms: float = 0.0  # Bastion's own analysis and decision before forwarding it
    tables: tuple[str, ...] = ()  # every relation read or written, schema-qualified when written so
    tables_written: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()  # columns named, `schema.table.column` when certain
    masked_cells: Mapping[str, int] | None = None  # cells masked in its result, per class
    parameters: tuple[str | None, ...] = ()  # bind parameters, scrubbed (audit.parameters)
    unmasked: tuple[str, ...] = ()  # classes the policy let this result show in clear
    approval_id: int | None = None  # the approval request that let it run (or refused it)


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """A live client session, as operators list it (`bastion sessions list`)."""

    session_id: str
    user: str
    groups: tuple[str, ...]
    identity_kind: str
    source_ip: str
    source_port: int
    target: str
    upstream_role: str
    application_name: str
    tls_version: str | None
    started_at: float  # Unix time
    statements: int
    transaction: str  # "idle", "in transaction" or "failed transaction"
    waiting: str  # "", "approval <id>", "audit record" or "audit durability"

"""Shared builders for the policy tests: connections, statements, policies and a fixed clock.

Statements are built as StatementInfo values directly, so the tests do not depend on how far
the analyzer has got; only a few go through `analyze()`, and those rely on `kind` alone.
"""

from __future__ import annotations

import itertools
import textwrap
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from bastion.identity.directory import Identity
from bastion.identity.records import IdentityKind
from bastion.pipeline.context import ConnectionContext
from bastion.policy.engine import PolicyEngine
from bastion.policy.loader import policy_from_mapping
from bastion.policy.model import Policy
from bastion.sql.statement import StatementInfo, TableRef

# Monday 2024-01-01 10:30 UTC.
MONDAY_1030 = datetime(2024, 1, 1, 10, 30, tzinfo=UTC).timestamp()
PRODUCTION = {"environment": "production"}
STAGING = {"environment": "staging"}

WritePolicy = Callable[[str], Path]

_numbers = itertools.count(1)


def connection(
    user: str = "alice",
    groups: tuple[str, ...] = ("analysts",),
    kind: IdentityKind = IdentityKind.HUMAN,
    target: str = "demo",
    labels: Mapping[str, str] | None = None,
    ip: str = "10.1.2.3",
    port: int = 50000,
    tls: str | None = "TLSv1.3",
    auth: str = "scram-sha-256",
) -> ConnectionContext:
    return ConnectionContext(
        session_id="test",
        identity=Identity(user, groups, kind, auth),
        source_ip=ip,
        source_port=port,
        tls_version=tls,
        target=target,
        target_labels=dict(labels or {}),
    )


def statement(kind: str, text: str | None = None, **fields: Any) -> StatementInfo:
    """A StatementInfo of `kind`; `text` defaults to a text no other statement has."""
    if text is None:
        text = f"{kind} /* {next(_numbers)} */"
    return StatementInfo(kind=kind, text=text, normalized=text, fingerprint="", **fields)


def table(qualified: str) -> TableRef:
    schema, _, name = qualified.rpartition(".")
    return TableRef(name, schema or None)


def policy(text: str) -> Policy:
    data = yaml.safe_load(textwrap.dedent(text))
    return policy_from_mapping(data, source="policy.yaml")


def engine(text: str, now: float = MONDAY_1030, **kwargs: Any) -> PolicyEngine:
    return PolicyEngine(policy(text), clock=lambda: now, **kwargs)


class FakeClock:
    """A clock tests can move."""

    def __init__(self, now: float = MONDAY_1030) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def write_policy(tmp_path: Path) -> WritePolicy:
    """Write dedented YAML to tmp_path/policy.yaml and return its path."""

    def write(text: str) -> Path:
        path = tmp_path / "policy.yaml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write

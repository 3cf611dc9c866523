"""Hot reload: valid files swap in atomically, invalid ones leave the running policy alone."""

from __future__ import annotations

import ast
import asyncio
import logging
import os
from pathlib import Path

import pytest

from bastion.errors import ConfigError
from bastion.pipeline.decision import Allow, Deny
from bastion.pipeline.stages import Decider
from bastion.policy.reload import PolicyHolder, watch_policy

from .conftest import WritePolicy, connection, statement

ALLOW_SELECT = """
version: 1
rules:
  - {id: reads, match: {statements: [select]}, effect: allow}
"""
DENY_SELECT = """
version: 1
rules:
  - {id: no-reads, match: {statements: [select]}, effect: deny}
"""
BROKEN = """
version: 1
rules:
  - {id: reads, match: {statments: [select]}, effect: allow}
"""


def touch_later(path: Path) -> None:
    """Make sure a rewrite is seen even on file systems with coarse timestamps."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))


def test_holder_decides_with_the_loaded_policy(write_policy: WritePolicy) -> None:
    holder = PolicyHolder(write_policy(ALLOW_SELECT))
    assert holder.version == 1
    assert holder.decide(connection(), [statement("select")]) == Allow("reads")
    assert holder.connect(connection()).rule == "default"


def test_holder_and_engine_are_deciders(write_policy: WritePolicy) -> None:
    holder = PolicyHolder(write_policy(ALLOW_SELECT))
    deciders: list[Decider] = [holder, holder.engine]  # type-checked against the protocol
    for decider in deciders:
        assert decider.decide(connection(), [statement("select")]) == Allow("reads")
        assert decider.connect(connection()).rule == "default"


def test_holder_refuses_to_start_with_an_invalid_policy(write_policy: WritePolicy) -> None:
    with pytest.raises(ConfigError, match="statments"):
        PolicyHolder(write_policy(BROKEN))


def test_reload_swaps_in_a_valid_policy(write_policy: WritePolicy) -> None:
    path = write_policy(ALLOW_SELECT)
    holder = PolicyHolder(path)
    select = [statement("select", text="SELECT 1")]
    assert isinstance(holder.decide(connection(), select), Allow)  # now cached
    write_policy(DENY_SELECT)
    assert holder.reload() is True
    assert holder.version == 2
    assert holder.last_error is None
    decision = holder.decide(connection(), select)
    assert isinstance(decision, Deny)
    assert decision.rule == "no-reads"


def test_invalid_reload_keeps_the_old_policy(
    write_policy: WritePolicy, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_policy(ALLOW_SELECT)
    holder = PolicyHolder(path)
    write_policy(BROKEN)
    with caplog.at_level(logging.ERROR, logger="bastion.policy.reload"):
        assert holder.reload() is False
    assert holder.version == 1
    assert holder.last_error is not None
    assert "rules[0].match.statments: unknown key" in holder.last_error
    assert any("keeping the policy in force" in record.message for record in caplog.records)
    assert holder.decide(connection(), [statement("select")]) == Allow("reads")


def test_missing_file_keeps_the_old_policy(write_policy: WritePolicy) -> None:
    path = write_policy(ALLOW_SELECT)
    holder = PolicyHolder(path)
    path.unlink()
    assert holder.reload() is False
    assert "cannot read" in (holder.last_error or "")
    assert holder.decide(connection(), [statement("select")]) == Allow("reads")


def test_reload_if_changed(write_policy: WritePolicy) -> None:
    path = write_policy(ALLOW_SELECT)
    holder = PolicyHolder(path)
    assert holder.reload_if_changed() is False
    write_policy(DENY_SELECT + "\n# a longer file\n")
    touch_later(path)
    assert holder.reload_if_changed() is True
    assert holder.version == 2
    assert holder.reload_if_changed() is False


def test_a_broken_file_is_tried_once_per_change(write_policy: WritePolicy) -> None:
    path = write_policy(ALLOW_SELECT)
    holder = PolicyHolder(path)
    write_policy(BROKEN)
    touch_later(path)
    assert holder.reload_if_changed() is False
    holder.last_error = None
    assert holder.reload_if_changed() is False
    assert holder.last_error is None  # not retried: the file did not change again
    write_policy(DENY_SELECT)
    touch_later(path)
    assert holder.reload_if_changed() is True


def test_watcher_reloads_a_changed_file(write_policy: WritePolicy) -> None:
    path = write_policy(ALLOW_SELECT)
    holder = PolicyHolder(path)
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            write_policy(DENY_SELECT)
            touch_later(path)
        if len(sleeps) == 4:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(watch_policy(holder, sleep))
    assert sleeps == [1.0, 1.0, 1.0, 1.0]
    assert holder.version == 2
    assert isinstance(holder.decide(connection(), [statement("select")]), Deny)


def test_policy_package_stays_free_of_event_loops_and_sockets() -> None:
    package = Path(__file__).resolve().parents[2] / "src" / "bastion" / "policy"
    for module in package.glob("*.py"):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                root = name.split(".")[0]
                assert root not in {"asyncio", "uvloop", "socket"}, (module.name, name)
                assert not name.startswith(("bastion.session", "bastion.app", "bastion.cli"))

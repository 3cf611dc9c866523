"""Hot reload: the current policy behind a stable Decider, swapped in one step.

`PolicyHolder` is what the pipeline holds. `reload()` reads the file again and, only if it is
valid, replaces the engine (a single attribute assignment, so a decision in progress finishes
with the policy it started with); an invalid file leaves the running policy in place and
says why. `watch_policy` polls the file's size, mtime and inode and reloads on change. This
module does no event-loop work itself: the caller passes the sleep function (asyncio.sleep).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from bastion.errors import ConfigError
from bastion.pipeline.context import ConnectionContext
from bastion.pipeline.decision import Decision, SessionDecision
from bastion.policy.engine import DEFAULT_CACHE_SIZE, Clock, PolicyEngine
from bastion.policy.loader import load_policy
from bastion.sql.statement import StatementInfo

log = logging.getLogger(__name__)

WATCH_INTERVAL_SECONDS = 1.0

FileStamp = tuple[int, int, int] | None  # (mtime_ns, size, inode); None when unreadable


def file_stamp(path: Path) -> FileStamp:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


class PolicyHolder:
    """The current `PolicyEngine` for one policy file. Implements the pipeline's `Decider`.

    The constructor loads the file and raises ConfigError if it is invalid: Bastion does not
    start without a valid policy. `version` starts at 1 and grows by one with every
    successful reload; it is part of every cached decision's key.
    """

    def __init__(
        self,
        path: Path,
        *,
        clock: Clock = time.time,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self.path = path
        self._clock = clock
        self._cache_size = cache_size
        self._seen = file_stamp(path)
        self.last_error: str | None = None
        # Told about every reload attempt ("policy_reload", {...}): the audit record keeps them.
        self.on_reload: Callable[[str, dict[str, object]], None] | None = None
        self._engine = PolicyEngine(
            load_policy(path), version=1, clock=clock, cache_size=cache_size
        )

    @property
    def engine(self) -> PolicyEngine:
        return self._engine

    @property
    def version(self) -> int:
        return self._engine.version

    def connect(self, context: ConnectionContext) -> SessionDecision:
        return self._engine.connect(context)

    def decide(self, context: ConnectionContext, statements: Sequence[StatementInfo]) -> Decision:
        return self._engine.decide(context, statements)

    def reload(self) -> bool:
        """Load the file again; True if the new policy is now in force.

        On failure the old policy stays, `last_error` says why, and the reason is logged.
        """
        # Stamp first: a write that lands while the file is read is seen by the next check.
        self._seen = file_stamp(self.path)
        try:
            policy = load_policy(self.path)
            engine = PolicyEngine(
                policy,
                version=self._engine.version + 1,
                clock=self._clock,
                cache_size=self._cache_size,
            )
        except ConfigError as exc:
            return self._failed(exc.message)
        except Exception as exc:  # keep enforcing the old policy whatever went wrong
            log.exception("policy reload failed unexpectedly")
            return self._failed(f"{self.path}: {type(exc).__name__}: {exc}")
        self._engine = engine
        self.last_error = None
        log.info(
            "policy reloaded",
            extra={"fields": {"policy": str(self.path), "policy_version": engine.version}},
        )
        self._tell("ok", version=engine.version, sha256=_digest(self.path))
        return True

    def reload_if_changed(self) -> bool:
        """Reload when the file's size, mtime or inode changed since the last attempt."""
        if file_stamp(self.path) == self._seen:
            return False
        return self.reload()

    def _tell(self, outcome: str, **fields: object) -> None:
        if self.on_reload is None:
            return
        try:
            self.on_reload(
                "policy_reload", {"policy": str(self.path), "outcome": outcome, **fields}
            )
        except Exception:
            log.exception("recording a policy reload failed")

    def _failed(self, message: str) -> bool:
        self.last_error = message
        self._tell("failed", version=self._engine.version, error=message)
        log.error(
            "policy reload failed; keeping the policy in force",
            extra={
                "fields": {
                    "policy": str(self.path),
                    "policy_version": self._engine.version,
                    "error": message,
                }
            },
        )
        return False


def _digest(path: Path) -> str:
    """The SHA-256 of the policy file as loaded, so the record says exactly which one."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


async def watch_policy(
    holder: PolicyHolder,
    sleep: Callable[[float], Awaitable[object]],
    interval: float = WATCH_INTERVAL_SECONDS,
) -> None:
    """Check the policy file every `interval` seconds and reload it when it changed.

    Runs until cancelled: `asyncio.create_task(watch_policy(holder, asyncio.sleep))`.
    """
    while True:
        await sleep(interval)
        holder.reload_if_changed()

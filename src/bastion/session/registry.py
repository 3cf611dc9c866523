"""SessionRegistry: the sessions in relay phase on this instance, for operators.

The admin API lists them and can end one (`bastion sessions kill ID`): the client gets a FATAL
57P01 error naming the operator's reason, as PostgreSQL's own pg_terminate_backend says, and
the upstream connection is closed with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from bastion.pipeline.events import SessionSummary


class LiveSession(Protocol):
    session_id: str

    def summary(self) -> SessionSummary: ...

    def terminate(self, reason: str) -> None: ...


class SessionRegistry:
    def __init__(self) -> None:
        self._sessions: dict[str, LiveSession] = {}
        self.on_change: Callable[[], None] | None = None

    def add(self, session: LiveSession) -> None:
        self._sessions[session.session_id] = session

    def remove(self, session: LiveSession) -> None:
        if self._sessions.get(session.session_id) is session:
            del self._sessions[session.session_id]

    def list(self) -> list[SessionSummary]:
        return sorted(
            (session.summary() for session in self._sessions.values()),
            key=lambda summary: summary.started_at,
        )

    def terminate(self, session_id: str, reason: str) -> SessionSummary | None:
        """End the session; its summary just before, or None when there is no such session."""
        session = self._sessions.get(session_id)
        if session is None:
            return None
        summary = session.summary()
        session.terminate(reason)
        return summary

    def count_by_target(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for session in self._sessions.values():
            target = session.summary().target
            counts[target] = counts.get(target, 0) + 1
        return counts

    def __len__(self) -> int:
        return len(self._sessions)

"""AuditRoom: statements wait here while the audit record's queue is full.

A statement whose record could not be kept must not run, and a full queue (a slow or failing
audit store) is usually a passing state. So instead of refusing at once, the session holds the
statement and waits for room: the audit writer calls `space_freed()` from its own thread when
its queue drains, and waiting sessions look again (and at least every 50 ms). Past
`wait_seconds` the statement fails with a clear error.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

_RECHECK_SECONDS = 0.05


class AuditRoom:
    def __init__(self, has_room: Callable[[], bool], wait_seconds: float) -> None:
        self._has_room = has_room
        self.wait_seconds = wait_seconds
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind to the event loop the sessions run on (before any session waits)."""
        self._loop = loop
        self._event = asyncio.Event()

    def space_freed(self) -> None:
        """The writer's queue drained; safe to call from any thread."""
        loop, event = self._loop, self._event
        if loop is not None and event is not None and not loop.is_closed():
            loop.call_soon_threadsafe(event.set)

    async def wait(self) -> bool:
        """True once the record has room; False when wait_seconds passed first."""
        if self._has_room():
            return True
        loop = asyncio.get_running_loop()
        if self._event is None:
            self.attach(loop)
        assert self._event is not None
        deadline = loop.time() + self.wait_seconds
        while not self._has_room():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), min(remaining, _RECHECK_SECONDS))
        return True

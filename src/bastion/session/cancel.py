"""CancelRegistry: maps the cancel keys Bastion hands to clients onto the server's own keys.

Clients see the server's real process id (so pg_backend_pid() and pg_terminate_backend() mean
what they say) but a secret key chosen by Bastion. A CancelRequest is honoured only when its key
matches, compared in constant time, and is then re-sent to the right server with the real key;
the server's key never leaves Bastion.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from bastion.targets.runtime import TargetRuntime

CLIENT_KEY_BYTES = 4  # protocol 3.0 fixes the key at 32 bits


@dataclass(frozen=True, slots=True)
class CancelEntry:
    process_id: int
    client_key: bytes = field(repr=False)
    upstream_key: bytes = field(repr=False)
    target: TargetRuntime
    # Called first; True means the session handled the cancel itself (it withdrew a statement
    # waiting for approval) and the server must not be bothered.
    intercept: Callable[[], bool] | None = None


class CancelRegistry:
    def __init__(self) -> None:
        self._entries: dict[int, list[CancelEntry]] = {}

    def register(
        self,
        process_id: int,
        upstream_key: bytes,
        target: TargetRuntime,
        intercept: Callable[[], bool] | None = None,
    ) -> CancelEntry:
        entry = CancelEntry(
            process_id=process_id,
            client_key=secrets.token_bytes(CLIENT_KEY_BYTES),
            upstream_key=upstream_key,
            target=target,
            intercept=intercept,
        )
        self._entries.setdefault(process_id, []).append(entry)
        return entry

    def unregister(self, entry: CancelEntry) -> None:
        entries = self._entries.get(entry.process_id)
        if not entries:
            return
        entries[:] = [e for e in entries if e is not entry]
        if not entries:
            del self._entries[entry.process_id]

    def lookup(self, process_id: int, client_key: bytes) -> CancelEntry | None:
        # Several targets can run backends with the same pid; the key tells them apart.
        found = None
        for entry in self._entries.get(process_id, ()):
            if hmac.compare_digest(entry.client_key, client_key):
                found = entry
        return found

    def __len__(self) -> int:
        return sum(len(v) for v in self._entries.values())

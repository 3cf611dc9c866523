"""Rate limiting of failed authentications, per source address and per user name.

`AuthRateLimiter` counts failures in a sliding window: a key (a source address, or a user name)
is blocked while it has `max_failures` failures younger than `window_seconds`, and unblocks by
itself as the oldest of them ages out. Only the latest `max_failures` timestamps of a key are
kept, and at most `max_entries` keys (the least recently failed are forgotten first), so memory
stays bounded whatever an attacker sends. It decides; it does not sleep, log or touch sockets.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

from bastion.errors import TooManyAttempts

_SOURCE = "source"
_USER = "user"
_Key = tuple[str, str]


class AuthRateLimiter:
    """Refuses authentication for a source or user with too many recent failures."""

    def __init__(
        self,
        max_failures: int,
        window_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 100_000,
    ) -> None:
        if max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        if window_seconds <= 0:
            raise ValueError("window_seconds must be positive")
        if max_entries < 2:
            raise ValueError("max_entries must be at least 2")
        self._max_failures = max_failures
        self._window = window_seconds
        self._clock = clock
        self._max_entries = max_entries
        # Least recently failed first, so eviction pops from the front.
        self._failures: OrderedDict[_Key, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._failures)

    def check(self, source: str, username: str) -> None:
        """Raise TooManyAttempts if the source or the user is blocked right now."""
        now = self._clock()
        if self._blocked((_SOURCE, source), now) or self._blocked((_USER, username), now):
            raise TooManyAttempts("too many failed authentication attempts; try again later")

    def failure(self, source: str, username: str) -> None:
        """Record a failed authentication against both the source and the user."""
        now = self._clock()
        for key in ((_SOURCE, source), (_USER, username)):
            stamps = self._failures.pop(key, None)
            if stamps is None:
                stamps = deque(maxlen=self._max_failures)
            stamps.append(now)
            self._failures[key] = stamps
        while len(self._failures) > self._max_entries:
            self._failures.popitem(last=False)

    def success(self, source: str, username: str) -> None:
        """Forget this user's failures. The source's failures stay until they age out: a
        password sprayer holding one valid account must not be able to reset its address's
        counter by logging in between guesses."""
        self._failures.pop((_USER, username), None)

    def _blocked(self, key: _Key, now: float) -> bool:
        stamps = self._failures.get(key)
        if stamps is None:
            return False
        while stamps and stamps[0] <= now - self._window:
            stamps.popleft()
        if not stamps:
            del self._failures[key]
            return False
        return len(stamps) >= self._max_failures

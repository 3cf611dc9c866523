"""ApprovalService: the one place where held sessions, approvers and the state store meet.

Sessions open a request (or find a usable grant) and wait for its decision; the admin API lists
requests and records votes. Every store call runs in a worker thread, so the event loop never
blocks on SQLite or PostgreSQL. A decision made through this instance wakes the waiting session
at once; one made through another instance sharing the store is seen by a poller that, while
any session waits, reads the waiting requests' states every `poll_seconds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from bastion.approvals.model import (
    ApprovalRequest,
    ApprovalState,
    Approver,
    RequestDraft,
    TokenRecord,
    Verdict,
)
from bastion.approvals.store import ApprovalStore

log = logging.getLogger("bastion.approvals")

_PENDING_COUNT_LIMIT = 10_000
# How often lapsed requests and grants are moved to `expired`, in poller turns.
_EXPIRE_EVERY = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class ApprovalSettings:
    hold_seconds: float = 300.0
    expire_seconds: float = 86400.0
    grant_seconds: float = 3600.0
    poll_seconds: float = 0.5


class ApprovalListener(Protocol):
    """Told about every request event (audit record, metrics, notifications)."""

    def __call__(self, event: str, request: ApprovalRequest, actor: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Granted:
    """An approved grant for exactly this statement was found and used up."""

    request: ApprovalRequest


@dataclass(frozen=True, slots=True)
class Held:
    """The statement waits for `request`; `created` is False when it joined an existing one."""

    request: ApprovalRequest
    created: bool


Opening = Granted | Held


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def utc_now() -> datetime:
    return datetime.now(UTC)


class ApprovalService:
    def __init__(
        self,
        store: ApprovalStore,
        settings: ApprovalSettings,
        *,
        listeners: Sequence[ApprovalListener] = (),
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.settings = settings
        self._listeners = list(listeners)
        self._clock = clock
        self._waiters: dict[int, list[asyncio.Future[ApprovalRequest]]] = {}
        self._wakeup: asyncio.Event | None = None
        self._poller: asyncio.Task[None] | None = None
        self._last_expiry = datetime.min.replace(tzinfo=UTC)
        # Requests waiting for a decision in the shared store, across instances (refreshed
        # with the expiry sweep, and at once when this instance creates or decides one).
        self.pending = 0

    def add_listener(self, listener: ApprovalListener) -> None:
        self._listeners.append(listener)

    @property
    def grant_ttl(self) -> timedelta:
        return timedelta(seconds=self.settings.grant_seconds)

    # Lifecycle.

    def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._poller = asyncio.get_running_loop().create_task(self._poll_forever())

    async def aclose(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
            self._poller = None
        for futures in self._waiters.values():
            for future in futures:
                future.cancel()
        self._waiters.clear()

    # The approver's side (admin API).

    async def list(
        self, states: Sequence[ApprovalState] = (), limit: int = 100
    ) -> list[ApprovalRequest]:
        return await asyncio.to_thread(self.store.list, states=tuple(states), limit=limit)

    async def get(self, request_id: int) -> ApprovalRequest | None:
        return await asyncio.to_thread(self.store.get, request_id)

    async def vote(
        self, request_id: int, approver: Approver, verdict: Verdict, comment: str
    ) -> ApprovalRequest:
        """Record a vote; raises an ApprovalError subclass when the rules refuse it."""
        request = await asyncio.to_thread(
            self.store.vote,
            request_id,
            approver,
            verdict,
            comment,
            self._clock(),
            self.grant_ttl,
        )
        self._emit("voted", request, approver.name)
        if request.state is not ApprovalState.PENDING:
            self.pending = max(0, self.pending - 1)
            self._emit(str(request.state), request, approver.name)
            self._resolve(request)
        return request

    async def token(self, token: str) -> TokenRecord | None:
        """The live token record for an admin API bearer token, if any."""
        return await asyncio.to_thread(self.store.find_token, token_digest(token), self._clock())

    # The session's side.

    async def open(self, draft: RequestDraft) -> Opening:
        """Use an approved grant for this exact statement, join a pending request for it, or
        create a new one."""
        now = self._clock()
        granted = await asyncio.to_thread(self.store.consume_grant, draft.grant_key, now)
        if granted is not None:
            self._emit("executed", granted, draft.requester)
            return Granted(granted)
        pending = await asyncio.to_thread(self.store.find_pending, draft.grant_key, now)
        if pending is not None:
            return Held(pending, created=False)
        request = await asyncio.to_thread(self.store.create, draft, now)
        self.pending += 1
        self._emit("requested", request, draft.requester)
        return Held(request, created=True)

    def expiry_for(self, expire_seconds: float | None) -> datetime:
        seconds = self.settings.expire_seconds if expire_seconds is None else expire_seconds
        return self._clock() + timedelta(seconds=seconds)

    async def wait(self, request_id: int, timeout: float) -> ApprovalRequest | None:
        """The request once it is no longer pending, or None when `timeout` passes first."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ApprovalRequest] = loop.create_future()
        self._waiters.setdefault(request_id, []).append(future)
        if self._wakeup is not None:
            self._wakeup.set()
        try:
            # The decision may have come before this session started waiting.
            current = await asyncio.to_thread(self.store.get, request_id)
            if current is not None and current.state is not ApprovalState.PENDING:
                return current
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            return None
        finally:
            futures = self._waiters.get(request_id, [])
            if future in futures:
                futures.remove(future)
            if not futures:
                self._waiters.pop(request_id, None)
            if not future.done():
                future.cancel()

    async def consume(self, request_id: int, actor: str) -> ApprovalRequest | None:
        """Use the approved request's grant for the held statement; None if it is gone."""
        request = await asyncio.to_thread(self.store.consume, request_id, self._clock())
        if request is not None:
            self._emit("executed", request, actor)
        return request

    async def withdraw(self, request_id: int, reason: str, actor: str) -> ApprovalRequest | None:
        request = await asyncio.to_thread(self.store.withdraw, request_id, reason, self._clock())
        if request is not None:
            self.pending = max(0, self.pending - 1)
            self._emit("withdrawn", request, actor)
            self._resolve(request)
        return request

    @property
    def waiting(self) -> int:
        """Sessions waiting for a decision on this instance."""
        return sum(len(futures) for futures in self._waiters.values())

    # Internals.

    def _emit(self, event: str, request: ApprovalRequest, actor: str) -> None:
        for listener in self._listeners:
            try:
                listener(event, request, actor)
            except Exception:
                log.exception("approval listener failed", extra={"fields": {"event": event}})

    def _resolve(self, request: ApprovalRequest) -> None:
        for future in self._waiters.get(request.id, []):
            if not future.done():
                future.set_result(request)

    async def _poll_forever(self) -> None:
        assert self._wakeup is not None
        while True:
            try:
                await self._poll_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The store being down must not stop the poller; sessions time out meanwhile.
                log.warning("approval poll failed", extra={"fields": {"error": type(exc).__name__}})
            if not self._waiters:
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), _EXPIRE_EVERY.total_seconds())
            else:
                await asyncio.sleep(self.settings.poll_seconds)

    async def _poll_once(self) -> None:
        now = self._clock()
        if now - self._last_expiry >= _EXPIRE_EVERY:
            self._last_expiry = now
            for request in await asyncio.to_thread(self.store.expire, now):
                self._emit("expired", request, "bastion")
                self._resolve(request)
            pending = await asyncio.to_thread(
                self.store.list, states=(ApprovalState.PENDING,), limit=_PENDING_COUNT_LIMIT
            )
            self.pending = len(pending)
        ids = list(self._waiters)
        if not ids:
            return
        current = await asyncio.to_thread(self.store.get_many, ids)
        for request in current.values():
            if request.state is not ApprovalState.PENDING:
                self._resolve(request)

"""Notifications: tell people about approval requests over HTTP (generic webhooks and Slack).

This module owns the generic webhook format (Slack's is rendered by `slack.py`), signing, and the
delivery of both with retries. It never decides anything about a request and never blocks the
caller: `Notifier.notify` schedules background tasks and returns at once; a receiver that is
slow or down costs nothing but a log line and a `Delivery` record. Channel URLs are secrets (a
Slack webhook URL is a credential), so neither URLs nor signing keys ever appear in logs, errors
or `Delivery` records.

Generic webhooks are POSTed as JSON with these headers:

    X-Bastion-Event: requested | approved | denied | expired | withdrawn | executed
    X-Bastion-Delivery: <unique id of this delivery; the same on every retry of it>
    X-Bastion-Timestamp: <unix seconds when this attempt was signed>
    X-Bastion-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.".encode() + body)>

A receiver recomputes the HMAC over the timestamp, a dot and the raw body bytes, compares it in
constant time and rejects timestamps far from its own clock (a replayed message is refused once
it is older than the tolerance; the delivery id lets receivers drop duplicates inside it).
`verify_signature` does exactly this.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

from bastion import __version__
from bastion.approvals.model import ApprovalRequest

# Re-exported so `from bastion.approvals.notify import render_slack, escape` keeps working.
from bastion.approvals.slack import escape as escape
from bastion.approvals.slack import render_slack as render_slack

log = logging.getLogger("bastion.approvals")

EVENTS = frozenset({"requested", "approved", "denied", "expired", "withdrawn", "executed"})
BACKOFF_CAP = 30.0  # seconds between two attempts, at most
CLOSE_GRACE = 5.0  # seconds aclose() lets in-flight deliveries finish
_RETRIED_CLIENT_ERRORS = frozenset({408, 429})

Links = Callable[[int], tuple[str, str, str]]  # request id -> (view, approve, deny) URLs


@dataclass(frozen=True)
class Channel:
    """One place to notify. `name` is what logs and records show; the URL never is."""

    name: str  # "webhook-1", "slack-1", ...
    kind: Literal["webhook", "slack"]
    url: str
    secret: bytes | None
    retries: int  # further attempts after the first one failed
    timeout: float  # seconds per attempt


@dataclass(frozen=True)
class Delivery:
    """The outcome of sending one event to one channel, reported once it is final."""

    channel: str
    request_id: int
    event: str
    ok: bool
    attempts: int
    error: str  # short and free of URLs and secrets: "HTTP 500", "timeout", ...; "" when ok


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The X-Bastion-Signature header value for one attempt."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    secret: bytes,
    timestamp: str,
    body: bytes,
    header: str,
    *,
    now: float | None = None,
    tolerance: float = 300,
) -> bool:
    """True if `header` signs `body` at `timestamp` with `secret`, and the timestamp is fresh."""
    try:
        signed_at = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - signed_at) > tolerance:
        return False
    expected = sign(secret, str(signed_at), body).encode()
    return hmac.compare_digest(expected, header.strip().encode("utf-8", "replace"))


class Notifier:
    """Sends approval events to every configured channel, in the background, with retries."""

    def __init__(
        self,
        channels: Sequence[Channel],
        *,
        links: Links | None,
        on_delivery: Callable[[Delivery], None] | None = None,
        backoff: float = 0.5,
        client_factory: Callable[[], httpx.AsyncClient] | None = None,
    ) -> None:
        for channel in channels:
            # The configuration refuses unsigned webhooks; a receiver could not trust them.
            if channel.kind == "webhook" and not channel.secret:
                raise ValueError(f"notification channel {channel.name}: a webhook needs a secret")
        self._channels = tuple(channels)
        self._links = links
        self._on_delivery = on_delivery
        self._backoff = backoff
        self._client_factory = client_factory or _default_client
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def notify(self, event: str, request: ApprovalRequest) -> None:
        """Schedule `event` for every channel and return at once. Never raises."""
        try:
            self._schedule(event, request)
        except Exception:
            # A bug here must not fail the statement or decision that triggered the event.
            log.exception(
                "could not schedule notifications",
                extra={"fields": {"request_id": request.id, "event": event}},
            )

    async def aclose(self, grace: float = CLOSE_GRACE) -> None:
        """Let in-flight deliveries finish for up to `grace` seconds, cancel the rest, close."""
        self._closed = True
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def _schedule(self, event: str, request: ApprovalRequest) -> None:
        if not self._channels:
            return
        if event not in EVENTS:
            raise ValueError(f"unknown notification event {event!r}")
        if self._closed:
            self._report_all(event, request, "notifier closed")
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._report_all(event, request, "no running event loop")
            return
        try:
            links = self._links(request.id) if self._links is not None else None
            bodies = {
                kind: _json(RENDERERS[kind](event, request, links))
                for kind in {channel.kind for channel in self._channels}
            }
        except Exception:
            log.exception(
                "could not build notification",
                extra={"fields": {"request_id": request.id, "event": event}},
            )
            self._report_all(event, request, "could not build the message")
            return
        for channel in self._channels:
            delivery_id = uuid.uuid4().hex  # per channel: receivers use it to drop duplicates
            task = loop.create_task(
                self._deliver(channel, event, request.id, bodies[channel.kind], delivery_id),
                name=f"notify {channel.name} {event} {request.id}",
            )
            # The loop keeps only weak references to tasks: hold them until they finish.
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    async def _deliver(
        self, channel: Channel, event: str, request_id: int, body: bytes, delivery_id: str
    ) -> None:
        fields: dict[str, Any] = {
            "channel": channel.name,
            "kind": channel.kind,
            "request_id": request_id,
            "event": event,
            "delivery": delivery_id,
        }
        attempts = 0
        error = ""
        try:
            while True:
                attempts += 1
                error, retry_after = await self._attempt(channel, event, body, delivery_id)
                if not error:
                    log.debug(
                        "notification delivered", extra={"fields": {**fields, "attempts": attempts}}
                    )
                    self._report(Delivery(channel.name, request_id, event, True, attempts, ""))
                    return
                if retry_after is None or attempts > channel.retries:
                    break
                delay = self._delay(attempts - 1, retry_after)
                log.info(
                    "notification attempt failed, will retry",
                    extra={
                        "fields": {
                            **fields,
                            "attempts": attempts,
                            "error": error,
                            "retry_in": round(delay, 3),
                        }
                    },
                )
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            error = f"cancelled at shutdown ({error})" if error else "cancelled at shutdown"
            self._fail(channel, fields, attempts, error)
            raise
        self._fail(channel, fields, attempts, error)

    async def _attempt(
        self, channel: Channel, event: str, body: bytes, delivery_id: str
    ) -> tuple[str, float | None]:
        """Send once. Returns (error, retry_after): error "" on success; retry_after None when
        trying again cannot help, else the receiver's own wait in seconds (0 if it gave none)."""
        headers = {"Content-Type": "application/json"}
        if channel.kind == "webhook" and channel.secret:
            timestamp = str(int(time.time()))
            headers.update(
                {
                    "X-Bastion-Event": event,
                    "X-Bastion-Delivery": delivery_id,
                    "X-Bastion-Timestamp": timestamp,
                    "X-Bastion-Signature": sign(channel.secret, timestamp, body),
                }
            )
        client = self._http()
        try:
            async with asyncio.timeout(channel.timeout):
                request = client.build_request(
                    "POST", channel.url, content=body, headers=headers, timeout=channel.timeout
                )
                # Streamed so an answer's body is never read: only its status matters.
                response = await client.send(request, stream=True)
                await response.aclose()
        except (TimeoutError, httpx.TimeoutException):
            return "timeout", 0.0
        except (httpx.InvalidURL, httpx.UnsupportedProtocol):
            return "invalid URL", None
        except httpx.ConnectError as exc:
            return _connect_failure(exc), 0.0
        except httpx.HTTPError as exc:
            # Exception texts may quote the URL; only the class name is safe to report.
            return f"transport error ({type(exc).__name__})", 0.0
        status = response.status_code
        if 200 <= status < 300:
            return "", None
        error = f"HTTP {status}"
        if 300 <= status < 500 and status not in _RETRIED_CLIENT_ERRORS:
            # Redirects are not followed (the signed body must not travel elsewhere) and a
            # refused request will be refused again.
            return error, None
        return error, _retry_after(response.headers.get("Retry-After"))

    def _delay(self, retry: int, retry_after: float) -> float:
        delay = min(BACKOFF_CAP, self._backoff * 2.0**retry)
        delay += random.uniform(0, delay / 10)
        return max(delay, min(retry_after, BACKOFF_CAP))

    def _fail(self, channel: Channel, fields: dict[str, Any], attempts: int, error: str) -> None:
        log.warning(
            "notification failed",
            extra={"fields": {**fields, "attempts": attempts, "error": error}},
        )
        self._report(
            Delivery(channel.name, fields["request_id"], fields["event"], False, attempts, error)
        )

    def _report_all(self, event: str, request: ApprovalRequest, error: str) -> None:
        for channel in self._channels:
            fields = {
                "channel": channel.name,
                "kind": channel.kind,
                "request_id": request.id,
                "event": event,
            }
            self._fail(channel, fields, 0, error)

    def _report(self, delivery: Delivery) -> None:
        if self._on_delivery is None:
            return
        try:
            self._on_delivery(delivery)
        except Exception:
            log.exception(
                "notification delivery callback failed",
                extra={"fields": {"channel": delivery.channel, "request_id": delivery.request_id}},
            )


def render_webhook(
    event: str, request: ApprovalRequest, links: tuple[str, str, str] | None
) -> dict[str, Any]:
    """The generic webhook document for one event."""
    denial = request.denial
    view, approve, deny = links if links is not None else (None, None, None)
    return {
        "event": event,
        "request": {
            "id": request.id,
            "state": request.state.value,
            "requester": request.requester,
            "requester_groups": list(request.requester_groups),
            "source_address": request.source_address,
            "target": request.target,
            "statement": request.statement,
            "parameters": list(request.parameters),
            "fingerprint": request.fingerprint,
            "rule": request.rule,
            "policy_reason": request.policy_reason,
            "reason": request.reason,
            "approver_groups": list(request.approver_groups),
            "min_approvals": request.min_approvals,
            "approvals": list(request.approvals),
            "created_at": _iso(request.created_at),
            "expires_at": _iso(request.expires_at),
            "decided_at": _iso(request.decided_at),
            "grant_expires_at": _iso(request.grant_expires_at),
            "executed_at": _iso(request.executed_at),
            "denied_by": denial.approver if denial is not None else None,
            "comment": denial.comment if denial is not None else None,
            "state_reason": request.state_reason,
        },
        "links": {"view": view, "approve": approve, "deny": deny},
        "sent_at": datetime.now(UTC).isoformat(),
    }


RENDERERS: dict[str, Callable[[str, ApprovalRequest, tuple[str, str, str] | None], Any]] = {
    "webhook": render_webhook,
    "slack": render_slack,
}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def _connect_failure(exc: BaseException) -> str:
    """Name the root cause by its type: the exception texts carry the address."""
    seen: BaseException | None = exc
    for _ in range(10):  # the chain is short; the bound guards against cycles
        if seen is None:
            break
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, socket.gaierror):
            return "name resolution failed"
        seen = seen.__cause__ or seen.__context__
    return "connection failed"


def _retry_after(value: str | None) -> float:
    if value is None:
        return 0.0
    try:
        return max(0.0, float(value))
    except ValueError:
        return 0.0  # an HTTP date: ignored, the backoff applies


def _default_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        follow_redirects=False, headers={"User-Agent": f"bastion/{__version__}"}
    )

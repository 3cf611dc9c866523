"""Notifier: real HTTP deliveries to a local receiver; signatures, retries, Slack messages."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import pytest

from bastion.approvals.model import ApprovalRequest, ApprovalState, Verdict, Vote
from bastion.approvals.notify import Channel, Delivery, Notifier, verify_signature

SECRET = b"webhook-signing-key"
CREATED = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
LINKS = (
    "https://bastion.example/requests/42",
    "https://bastion.example/requests/42/approve",
    "https://bastion.example/requests/42/deny",
)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """A local web server answering POSTs with scripted statuses, after an optional delay."""

    statuses: list[int] = field(default_factory=list)  # answered in order, then 200
    delay: float = 0.0
    url: str = ""
    received: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def respond(self, path: str, headers: dict[str, str], body: bytes) -> int:
        with self._lock:
            self.received.append(Received(path, headers, body, time.monotonic()))
            status = self.statuses.pop(0) if self.statuses else 200
        if self.delay:
            self.release.wait(self.delay)
        return status


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = state.respond(self.path, dict(self.headers.items()), body)
            try:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:
                pass  # the client gave up waiting

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/hooks/s3cr3t-path"
    try:
        yield state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def closed_port_url() -> str:
    """A loopback URL nobody listens on: connections are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks/s3cr3t-path"


def approval_request(**changes: Any) -> ApprovalRequest:
    request = ApprovalRequest(
        id=42,
        requester="alice",
        requester_groups=("dev",),
        source_address="10.0.0.7",
        target="prod",
        statement="DELETE FROM orders WHERE id = 7",
        parameters=("7", None),
        fingerprint="f00d",
        grant_key="k",
        rule="destructive-needs-approval",
        policy_reason="DELETE on prod needs approval",
        reason="cleanup of duplicate order",
        approver_groups=("dba",),
        min_approvals=1,
        session_id="s1",
        state=ApprovalState.PENDING,
        created_at=CREATED,
        expires_at=CREATED + timedelta(hours=24),
    )
    return replace(request, **changes)


def channel(
    url: str,
    kind: Literal["webhook", "slack"] = "webhook",
    retries: int = 0,
    timeout: float = 5.0,
) -> Channel:
    return Channel(
        name=f"{kind}-1",
        kind=kind,
        url=url,
        secret=SECRET if kind == "webhook" else None,
        retries=retries,
        timeout=timeout,
    )


def deliver(
    channels: list[Channel],
    event: str = "requested",
    request: ApprovalRequest | None = None,
    backoff: float = 0.01,
    grace: float = 20.0,
) -> list[Delivery]:
    """Notify once and wait (through aclose) until every delivery is final."""
    deliveries: list[Delivery] = []

    async def scenario() -> None:
        notifier = Notifier(
            channels, links=lambda _id: LINKS, on_delivery=deliveries.append, backoff=backoff
        )
        notifier.notify(event, request or approval_request())
        await notifier.aclose(grace=grace)

    asyncio.run(scenario())
    return deliveries


class TestWebhook:
    def test_signed_document_that_receivers_can_verify(self, receiver: Receiver) -> None:
        [delivery] = deliver([channel(receiver.url)])
        assert delivery == Delivery("webhook-1", 42, "requested", True, 1, "")
        [got] = receiver.received
        assert got.path == "/hooks/s3cr3t-path"
        assert got.headers["Content-Type"] == "application/json"
        assert got.headers["X-Bastion-Event"] == "requested"
        assert got.headers["X-Bastion-Delivery"]
        timestamp = got.headers["X-Bastion-Timestamp"]
        signature = got.headers["X-Bastion-Signature"]
        assert abs(int(timestamp) - time.time()) < 60
        assert signature.startswith("sha256=")

        assert verify_signature(SECRET, timestamp, got.body, signature)
        assert not verify_signature(SECRET, timestamp, got.body.replace(b"7", b"8"), signature)
        assert not verify_signature(b"another key", timestamp, got.body, signature)
        assert not verify_signature(SECRET, str(int(timestamp) + 1), got.body, signature)
        stale = float(timestamp) + 301
        assert not verify_signature(SECRET, timestamp, got.body, signature, now=stale)
        assert verify_signature(SECRET, timestamp, got.body, signature, now=stale - 2)

    def test_document_describes_the_request(self, receiver: Receiver) -> None:
        deliver([channel(receiver.url)])
        document = json.loads(receiver.received[0].body)
        assert document["event"] == "requested"
        assert document["links"] == {"view": LINKS[0], "approve": LINKS[1], "deny": LINKS[2]}
        datetime.fromisoformat(document["sent_at"])
        request = document["request"]
        assert request["id"] == 42
        assert request["state"] == "pending"
        assert request["requester"] == "alice"
        assert request["requester_groups"] == ["dev"]
        assert request["statement"] == "DELETE FROM orders WHERE id = 7"
        assert request["parameters"] == ["7", None]
        assert request["rule"] == "destructive-needs-approval"
        assert request["approver_groups"] == ["dba"]
        assert request["approvals"] == []
        assert request["created_at"] == "2025-03-01T12:00:00+00:00"
        assert request["decided_at"] is None
        assert request["comment"] is None

    def test_denial_carries_the_deciders_comment(self, receiver: Receiver) -> None:
        decided = CREATED + timedelta(minutes=5)
        vote = Vote("omar", Verdict.DENY, "use a soft delete", decided)
        denied = approval_request(state=ApprovalState.DENIED, decided_at=decided, votes=(vote,))
        deliver([channel(receiver.url)], event="denied", request=denied)
        got = receiver.received[0]
        assert got.headers["X-Bastion-Event"] == "denied"
        request = json.loads(got.body)["request"]
        assert request["state"] == "denied"
        assert request["decided_at"] == decided.isoformat()
        assert request["comment"] == "use a soft delete"

    def test_unsigned_webhook_refused(self) -> None:
        with pytest.raises(ValueError, match="webhook-1"):
            Notifier([replace(channel("http://127.0.0.1:9/"), secret=None)], links=None)


class TestSignature:
    def test_malformed_inputs_are_rejected(self) -> None:
        now = time.time()
        assert not verify_signature(SECRET, "not a number", b"{}", "sha256=00")
        assert not verify_signature(SECRET, str(int(now)), b"{}", "")
        assert not verify_signature(SECRET, str(int(now)), b"{}", "sha256=\u00e9")
        assert not verify_signature(SECRET, str(int(now)), b"{}", "md5=abc", now=now)


class TestRetries:
    def test_server_errors_retried_with_growing_backoff(self, receiver: Receiver) -> None:
        receiver.statuses = [500, 503, 200]
        [delivery] = deliver([channel(receiver.url, retries=5)], backoff=0.1)
        assert delivery.ok
        assert delivery.attempts == 3
        first, second, third = receiver.received
        assert second.at - first.at >= 0.1
        assert third.at - second.at >= 0.2
        ids = {got.headers["X-Bastion-Delivery"] for got in receiver.received}
        assert len(ids) == 1
        for got in receiver.received:
            headers = got.headers
            assert verify_signature(
                SECRET, headers["X-Bastion-Timestamp"], got.body, headers["X-Bastion-Signature"]
            )

    def test_gives_up_after_the_configured_retries(self, receiver: Receiver) -> None:
        receiver.statuses = [500] * 10
        [delivery] = deliver([channel(receiver.url, retries=2)])
        assert delivery == Delivery("webhook-1", 42, "requested", False, 3, "HTTP 500")
        assert len(receiver.received) == 3

    @pytest.mark.parametrize("status", [400, 401, 404, 410, 302])
    def test_refusals_are_not_retried(self, receiver: Receiver, status: int) -> None:
        receiver.statuses = [status, 200]
        [delivery] = deliver([channel(receiver.url, retries=5)])
        assert delivery == Delivery("webhook-1", 42, "requested", False, 1, f"HTTP {status}")
        assert len(receiver.received) == 1

    @pytest.mark.parametrize("status", [408, 429])
    def test_timeouts_and_rate_limits_are_retried(self, receiver: Receiver, status: int) -> None:
        receiver.statuses = [status, 200]
        [delivery] = deliver([channel(receiver.url, retries=5)])
        assert delivery.ok
        assert delivery.attempts == 2

    def test_receiver_down(self, caplog: pytest.LogCaptureFixture) -> None:
        url = closed_port_url()
        with caplog.at_level(logging.DEBUG, logger="bastion.approvals"):
            [delivery] = deliver([channel(url, retries=2)])
        assert not delivery.ok
        assert delivery.attempts == 3
        assert delivery.error == "connection refused"
        port = url.split(":")[2].split("/")[0]
        logged = [
            record.getMessage() + json.dumps(getattr(record, "fields", {}))
            for record in caplog.records
        ]
        assert any("notification failed" in line for line in logged)
        for text in [delivery.error, *logged]:
            assert "127.0.0.1" not in text
            assert port not in text
            assert "s3cr3t" not in text
            assert SECRET.decode() not in text
        failed = [r for r in caplog.records if r.getMessage() == "notification failed"]
        assert failed[0].levelno == logging.WARNING
        assert failed[0].fields["channel"] == "webhook-1"  # type: ignore[attr-defined]
        assert failed[0].fields["attempts"] == 3  # type: ignore[attr-defined]

    def test_slow_receiver_times_out(self, receiver: Receiver) -> None:
        receiver.delay = 5.0
        started = time.monotonic()
        [delivery] = deliver([channel(receiver.url, retries=1, timeout=0.2)])
        assert time.monotonic() - started < 3.0
        assert delivery == Delivery("webhook-1", 42, "requested", False, 2, "timeout")
        assert len(receiver.received) == 2


class TestSlack:
    def test_new_request_message(self, receiver: Receiver) -> None:
        statement = "SELECT '<b>' & 1 > 0; -- ```\n" + "x" * 5000
        request = approval_request(statement=statement, reason="fix <@U123> & co")
        [delivery] = deliver([channel(receiver.url, kind="slack")], request=request)
        assert delivery == Delivery("slack-1", 42, "requested", True, 1, "")
        got = receiver.received[0]
        assert "X-Bastion-Signature" not in got.headers
        message = json.loads(got.body)
        assert "42" in message["text"]
        assert "alice" in message["text"]
        blocks = message["blocks"]
        texts = json.dumps(blocks)
        assert "fix &lt;@U123&gt; &amp; co" in texts
        assert "<@U123>" not in texts

        code = next(
            b["text"]["text"]
            for b in blocks
            if b["type"] == "section" and "text" in b and b["text"]["text"].startswith("```")
        )
        assert code.startswith("```SELECT '&lt;b&gt;' &amp; 1 &gt; 0; -- `")
        assert code.endswith("```")
        assert code.count("```") == 2  # the statement's own ``` cannot close the block
        assert len(code) < 3000
        assert "truncated" in code
        for block in blocks:
            if block["type"] == "section" and "text" in block:
                assert len(block["text"]["text"]) <= 3000

        [actions] = [b for b in blocks if b["type"] == "actions"]
        buttons = actions["elements"]
        assert [(b["type"], b["text"]["text"], b["url"]) for b in buttons] == [
            ("button", "Approve", LINKS[1]),
            ("button", "Deny", LINKS[2]),
        ]
        assert LINKS[0] in texts

    def test_outcome_is_one_line(self, receiver: Receiver) -> None:
        vote = Vote("omar", Verdict.APPROVE, "", CREATED)
        approved = approval_request(state=ApprovalState.APPROVED, votes=(vote,))
        deliver([channel(receiver.url, kind="slack")], event="approved", request=approved)
        message = json.loads(receiver.received[0].body)
        assert message["text"] == "request 42 approved by omar"
        assert not [b for b in message["blocks"] if b["type"] == "actions"]


class TestBackground:
    def test_notify_returns_at_once_while_the_receiver_is_slow(self, receiver: Receiver) -> None:
        receiver.delay = 1.0
        deliveries: list[Delivery] = []

        async def scenario() -> float:
            notifier = Notifier(
                [channel(receiver.url), channel(receiver.url, kind="slack")],
                links=lambda _id: LINKS,
                on_delivery=deliveries.append,
            )
            started = time.monotonic()
            notifier.notify("requested", approval_request())
            elapsed = time.monotonic() - started
            assert deliveries == []
            await notifier.aclose(grace=10)
            return elapsed

        assert asyncio.run(scenario()) < 0.05
        assert sorted(d.channel for d in deliveries) == ["slack-1", "webhook-1"]
        assert all(d.ok for d in deliveries)

    def test_aclose_cancels_what_does_not_finish_in_time(self, receiver: Receiver) -> None:
        receiver.delay = 30.0
        deliveries: list[Delivery] = []

        async def scenario() -> None:
            notifier = Notifier(
                [channel(receiver.url, timeout=30)], links=None, on_delivery=deliveries.append
            )
            notifier.notify("requested", approval_request())
            await asyncio.sleep(0.1)
            await notifier.aclose(grace=0.2)

        started = time.monotonic()
        asyncio.run(scenario())
        assert time.monotonic() - started < 3.0
        [delivery] = deliveries
        assert not delivery.ok
        assert delivery.error == "cancelled at shutdown"

    def test_without_a_running_loop_nothing_is_raised(self) -> None:
        deliveries: list[Delivery] = []
        notifier = Notifier(
            [channel("http://127.0.0.1:9/")], links=None, on_delivery=deliveries.append
        )
        notifier.notify("requested", approval_request())
        assert deliveries == [
            Delivery("webhook-1", 42, "requested", False, 0, "no running event loop")
        ]

    def test_a_failing_callback_does_not_escape(self, receiver: Receiver) -> None:
        def explode(_delivery: Delivery) -> None:
            raise RuntimeError("boom")

        async def scenario() -> None:
            notifier = Notifier([channel(receiver.url)], links=None, on_delivery=explode)
            notifier.notify("requested", approval_request())
            notifier.notify("no-such-event", approval_request())
            await notifier.aclose()

        asyncio.run(scenario())
        assert len(receiver.received) == 1

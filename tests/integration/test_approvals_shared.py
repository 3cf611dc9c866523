"""Two Bastion instances sharing a PostgreSQL state store: a statement held on one is approved
through the other's admin API (and its command line), the held session is released promptly,
and the webhook receiver gets signed notifications. Real servers, real clients, real HTTP."""

from __future__ import annotations

import json
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from bastion.approvals.notify import verify_signature
from bastion.demo.sample import SampleSummary
from support.admin_api import admin_cli, admin_url, login
from support.bastion import DEFAULT_USERS, BastionProcess, running_bastion
from support.bastion import TestUser as User
from support.servers import PostgresEndpoint, scratch_database

from .conftest import shop_target, upstream_env

POLICY = """\
version: 1
default_effect: allow
rules:
  - id: deletes-need-approval
    match: {statements: [delete]}
    effect: require_approval
    approvers: {groups: [dba], hold_seconds: 30}
"""
USERS = (
    *DEFAULT_USERS,
    User("dana", "dana-secret-1", ("dba",)),
    User("omar", "omar-secret-1", ("dba",)),
)
HOOK_SECRET = secrets.token_hex(16)


class Receiver:
    """A local webhook receiver that keeps what it was sent."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        received = self.deliveries

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[str]:
        return [json.loads(body)["event"] for _, body in self.deliveries]


@pytest.fixture(scope="module")
def state_url(postgres_endpoint: PostgresEndpoint) -> Iterator[str]:
    with scratch_database(postgres_endpoint, "bastion_state") as name:
        endpoint = postgres_endpoint
        yield f"postgresql://{endpoint.superuser}@{endpoint.host}:{endpoint.port}/{name}"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_endpoint: PostgresEndpoint,
    shop_db: tuple[str, SampleSummary],
    state_url: str,
    receiver: Receiver,
) -> Iterator[tuple[BastionProcess, BastionProcess]]:
    env = {**upstream_env(postgres_endpoint), "HOOK_SECRET": HOOK_SECRET}
    if postgres_endpoint.password:
        env["PGPASSWORD"] = postgres_endpoint.password
    target = shop_target(postgres_endpoint, shop_db[0])
    instances = []
    for name, notifications in (
        ("a", [{"kind": "webhook", "url": receiver.url, "secret": "env:HOOK_SECRET"}]),
        ("b", []),
    ):
        workdir: Path = tmp_path_factory.mktemp(f"instance-{name}")
        policy = workdir / "policy.yaml"
        policy.write_text(POLICY)
        extra = {
            "policy": str(policy),
            "state": {"store": state_url},
            "approvals": {"poll_seconds": 0.1, "notifications": notifications},
        }
        instances.append(
            running_bastion(workdir, [target], users=USERS, extra=extra, env=env, admin_port=0)
        )
    with instances[0] as first, instances[1] as second:
        yield first, second


@pytest.fixture
def victim(direct_dsn: str) -> Iterator[None]:
    with psycopg.connect(direct_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS shared_victim")
        conn.execute("CREATE TABLE shared_victim (id int PRIMARY KEY)")
        conn.execute("INSERT INTO shared_victim SELECT generate_series(1, 5)")
    yield
    with psycopg.connect(direct_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS shared_victim")


def _pending_id(proc: BastionProcess, headers: dict[str, str], statement: str) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        reply = httpx.get(
            f"{admin_url(proc)}/v1/approvals", params={"state": "pending"}, headers=headers
        )
        reply.raise_for_status()
        body = reply.json()
        items = body["approvals"] if isinstance(body, dict) else body
        for item in items:
            if item["statement"] == statement:
                return int(item["id"])
        time.sleep(0.05)
    raise AssertionError(f"no pending request for {statement!r}")


def _ids(direct_dsn: str) -> list[int]:
    with psycopg.connect(direct_dsn) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM shared_victim ORDER BY id")]


def test_held_on_one_instance_approved_through_the_other(
    pair: tuple[BastionProcess, BastionProcess],
    receiver: Receiver,
    victim: None,
    direct_dsn: str,
) -> None:
    holder, other = pair
    statement = "DELETE FROM shared_victim WHERE id = 1"
    results: list[Any] = []
    conn = psycopg.connect(holder.dsn("dana", "dana-secret-1"), autocommit=True)

    def run() -> None:
        try:
            results.append(conn.execute(statement).rowcount)
        except Exception as exc:
            results.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    omar = login(other, "omar", "omar-secret-1")
    request_id = _pending_id(other, omar, statement)
    # The requester cannot approve their own request; someone outside dba cannot either.
    dana = login(other, "dana", "dana-secret-1")
    alice = login(other, "alice", "alice-secret-1")
    for headers in (dana, alice):
        refused = httpx.post(
            f"{admin_url(other)}/v1/approvals/{request_id}/approve", headers=headers
        )
        assert refused.status_code == 403
    assert thread.is_alive()
    approved = httpx.post(
        f"{admin_url(other)}/v1/approvals/{request_id}/approve",
        json={"comment": "ok from instance b"},
        headers=omar,
    )
    assert approved.status_code == 200, approved.text
    decided = time.monotonic()
    thread.join(10)
    assert results == [1]
    assert time.monotonic() - decided < 3, "the held session was not released promptly"
    conn.close()
    assert 1 not in _ids(direct_dsn)
    # The webhook receiver heard about it, signed.
    deadline = time.monotonic() + 10
    while not {"requested", "executed"} <= set(receiver.events()):
        assert time.monotonic() < deadline, receiver.events()
        time.sleep(0.05)
    for headers, body in receiver.deliveries:
        assert verify_signature(
            HOOK_SECRET.encode(),
            headers["x-bastion-timestamp"],
            body,
            headers["x-bastion-signature"],
        )
        assert not verify_signature(
            b"another secret", headers["x-bastion-timestamp"], body, headers["x-bastion-signature"]
        )
    requested = next(json.loads(b) for _, b in receiver.deliveries if b'"requested"' in b)
    assert requested["request"]["id"] == request_id
    assert requested["request"]["statement"] == statement


def test_the_command_line_approves_through_the_other_instance(
    pair: tuple[BastionProcess, BastionProcess],
    victim: None,
    direct_dsn: str,
    tmp_path: Path,
) -> None:
    holder, other = pair
    statement = "DELETE FROM shared_victim WHERE id = 2"
    client = subprocess.Popen(
        ["psql", holder.dsn("dana", "dana-secret-1"), "-X", "-c", statement],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    cli = admin_cli(other, tmp_path, "omar-secret-1")
    assert cli("login", "omar").returncode == 0
    request_id = _pending_id(other, login(other, "omar", "omar-secret-1"), statement)
    listed = cli("approvals", "list")
    assert listed.returncode == 0 and str(request_id) in listed.stdout
    shown = cli("approvals", "show", str(request_id))
    assert statement in shown.stdout and "dana" in shown.stdout
    done = cli("approvals", "approve", str(request_id), "--comment", "via the CLI")
    assert done.returncode == 0, done.stderr
    stdout, stderr = client.communicate(timeout=15)
    assert "DELETE 1" in stdout, stderr
    assert 2 not in _ids(direct_dsn)

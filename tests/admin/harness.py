"""What the admin API tests build the app from and reach it with, in process: password users,
approval drafts, stand-ins for readiness and for the live sessions, a synchronous client on
httpx's ASGI transport, and the checks every OpenAPI document must pass. For the app served over
real HTTP and the command line run against it, see `served.py`."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from datetime import datetime, timedelta
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.routing import Route

from bastion.approvals.model import RequestDraft, grant_key
from bastion.identity.records import UserRecord
from bastion.identity.scram import make_verifier
from bastion.pipeline.events import SessionSummary

SECRET = b"s" * 32


class Ready:
    accepting = True


def password_user(name: str, *groups: str) -> UserRecord:
    """A password user whose password is `NAME-pw`."""
    return UserRecord(name=name, groups=groups, scram=make_verifier(f"{name}-pw"))


def request_draft(
    now: datetime,
    statement: str = "DELETE FROM orders WHERE id = $1",
    *,
    requester: str = "dave",
    parameters: tuple[str | None, ...] = ("7",),
    **overrides: Any,
) -> RequestDraft:
    """A draft by `requester` for a statement on `prod`, decidable for an hour by the dba group;
    `overrides` replace any other field."""
    draft = RequestDraft(
        requester=requester,
        requester_groups=("dba",),
        source_address="10.1.2.3",
        target="prod",
        statement=statement,
        parameters=parameters,
        fingerprint="fp-1",
        grant_key=grant_key(requester, "prod", statement, parameters),
        rule="prod-writes",
        policy_reason="writes on production need a second pair of eyes",
        reason="ticket OPS-42",
        approver_groups=("dba",),
        min_approvals=1,
        session_id="s-1",
        expires_at=now + timedelta(hours=1),
    )
    return dataclasses.replace(draft, **overrides)


def summary(session_id: str, *, age: float, **overrides: Any) -> SessionSummary:
    """A session of carol's on `shop`, opened `age` seconds ago; `overrides` replace fields."""
    fields: dict[str, Any] = {
        "session_id": session_id,
        "user": "carol",
        "groups": ("analysts",),
        "identity_kind": "human",
        "source_ip": "10.1.2.3",
        "source_port": 50123,
        "target": "shop",
        "upstream_role": "bastion_app",
        "application_name": "psql",
        "tls_version": "TLSv1.3",
        "started_at": time.time() - age,
        "statements": 4,
        "transaction": "idle",
        "waiting": "",
        **overrides,
    }
    return SessionSummary(**fields)


class FakeSessions:
    """A SessionSource over fixed summaries; `terminate` removes one and remembers why."""

    def __init__(self, *summaries: SessionSummary) -> None:
        self.live = {s.session_id: s for s in summaries}
        self.ended: list[tuple[str, str]] = []

    def list(self) -> list[SessionSummary]:
        return sorted(self.live.values(), key=lambda s: s.started_at)

    def terminate(self, session_id: str, reason: str) -> SessionSummary | None:
        found = self.live.pop(session_id, None)
        if found is not None:
            self.ended.append((session_id, reason))
        return found


class Client:
    """A synchronous face on httpx's ASGI transport (Starlette's TestClient wants httpx2)."""

    def __init__(self, app: Starlette) -> None:
        self._loop = asyncio.new_event_loop()
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        )

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self._loop.run_until_complete(self._client.request(method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def close(self) -> None:
        self._loop.run_until_complete(self._client.aclose())
        self._loop.close()


def described_routes(app: Starlette, document: dict[str, Any]) -> dict[str, set[str]]:
    """The methods of each path the OpenAPI `document` describes, checked to be exactly the
    routes `app` mounts."""
    mounted: dict[str, set[str]] = {}
    for route in app.routes:
        assert isinstance(route, Route)
        methods = {m.lower() for m in route.methods or ()} - {"head"}
        mounted.setdefault(route.path_format, set()).update(methods)
    described = {path: set(item) for path, item in document["paths"].items()}
    assert described == mounted
    return described


def check_openapi(document: dict[str, Any]) -> None:
    """What openapi-spec-validator would check first: the shape, operations, refs, security."""
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] and document["info"]["version"]
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    schemas = document["components"]["schemas"]
    operation_ids: list[str] = []
    for path, item in document["paths"].items():
        assert path.startswith("/")
        declared = set(re.findall(r"{(\w+)}", path))
        for method, operation in item.items():
            assert method in {"get", "post", "put", "patch", "delete"}
            operation_ids.append(operation["operationId"])
            assert operation["responses"], f"{method} {path}"
            for status, response in operation["responses"].items():
                assert re.fullmatch(r"[1-5][0-9][0-9]", status)
                assert response["description"]
            in_path = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert in_path == declared, f"{method} {path}"
            for requirement in operation.get("security", []):
                assert set(requirement) <= set(schemes)
    assert len(operation_ids) == len(set(operation_ids))
    text = json.dumps(document)
    for ref in re.findall(r'"\$ref": "([^"]+)"', text):
        prefix = "#/components/schemas/"
        assert ref.startswith(prefix) and ref[len(prefix) :] in schemas, ref

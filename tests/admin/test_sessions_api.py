"""The sessions endpoints of the admin app, and what the admin routes record, over a real
ApprovalService, SQLite store, authenticator and identity directory. The sessions themselves
are a stand-in holding `SessionSummary` values: the real registry is exercised end to end in
tests/integration/test_sessions.py."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from admin.harness import (
    SECRET,
    Client,
    FakeSessions,
    Ready,
    check_openapi,
    described_routes,
    password_user,
    request_draft,
    summary,
)
from bastion.admin.api import build_admin_app
from bastion.admin.auth import ApiAuthenticator
from bastion.admin.sessions_api import MAX_REASON_LENGTH
from bastion.approvals.service import ApprovalService, ApprovalSettings
from bastion.approvals.sqlite_store import SQLiteApprovalStore
from bastion.identity.directory import IdentityDirectory
from bastion.identity.ratelimit import AuthRateLimiter
from bastion.observability.metrics import BastionMetrics

USERS = [
    password_user("olga", "admin"),
    password_user("bob", "dba", "oncall"),
    password_user("carol", "analysts"),
]
ROUTES = [
    ("GET", "/v1/sessions", None),
    ("GET", "/v1/sessions/a1b2c3d4e5f6", None),
    ("POST", "/v1/sessions/a1b2c3d4e5f6/terminate", {"reason": "maintenance"}),
]


class Api:
    """The admin app with sessions mounted, its real parts, and what it recorded."""

    def __init__(self, tmp_path: Path, operator_groups: Sequence[str] = ("admin",)) -> None:
        self.store = SQLiteApprovalStore(tmp_path / "state.db")
        self.service = ApprovalService(self.store, ApprovalSettings())
        self.directory = IdentityDirectory(USERS, [], SECRET)
        self.auth = ApiAuthenticator(
            self.service, lambda: self.directory, rate_limiter=AuthRateLimiter(max_failures=2)
        )
        self.sessions = FakeSessions(
            summary("a1b2c3d4e5f6", age=90, transaction="in transaction"),
            summary("0f0f0f0f0f0f", age=3600, user="dave", waiting="approval 7"),
        )
        self.recorded: list[tuple[str, dict[str, object]]] = []
        self.app = build_admin_app(
            Ready(),
            BastionMetrics(),
            approvals=self.service,
            auth=self.auth,
            sessions=self.sessions,
            operator_groups=operator_groups,
            record_admin=lambda action, payload: self.recorded.append((action, payload)),
        )
        self.client = Client(self.app)

    def close(self) -> None:
        self.client.close()
        self.store.close()

    def login(self, user: str, password: str | None = None) -> Any:
        return self.client.post(
            "/v1/login", json={"user": user, "password": password or f"{user}-pw"}
        )

    def as_user(self, user: str) -> dict[str, str]:
        response = self.login(user)
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['token']}"}

    def actions(self) -> list[str]:
        return [action for action, _ in self.recorded]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    made = Api(tmp_path)
    yield made
    made.close()


class TestAccess:
    @pytest.mark.parametrize(("method", "path", "body"), ROUTES)
    def test_without_a_valid_token_401(
        self, api: Api, method: str, path: str, body: dict[str, str] | None
    ) -> None:
        for headers in ({}, {"Authorization": "Bearer bst_nonsense"}):
            response = api.client.request(method, path, json=body, headers=headers)
            assert response.status_code == 401
            assert response.headers["www-authenticate"].startswith("Bearer")
        assert api.sessions.ended == []

    @pytest.mark.parametrize(("method", "path", "body"), ROUTES)
    def test_non_operators_get_403_naming_the_groups(
        self, api: Api, method: str, path: str, body: dict[str, str] | None
    ) -> None:
        response = api.client.request(method, path, json=body, headers=api.as_user("carol"))
        assert response.status_code == 403
        assert response.json()["error"] == "not_an_operator"
        assert "(admin," in response.json()["message"]
        assert api.sessions.ended == []
        assert "session_terminated" not in api.actions()

    def test_operator_groups_are_configurable(self, tmp_path: Path) -> None:
        api = Api(tmp_path, operator_groups=("oncall", "sre"))
        try:
            assert api.client.get("/v1/sessions", headers=api.as_user("bob")).status_code == 200
            refused = api.client.get("/v1/sessions", headers=api.as_user("olga"))
            assert refused.status_code == 403
            assert "oncall, sre" in refused.json()["message"]
        finally:
            api.close()

    def test_sessions_need_auth(self) -> None:
        with pytest.raises(ValueError):
            build_admin_app(Ready(), sessions=FakeSessions())


class TestListAndShow:
    def test_list_returns_every_field_oldest_first(self, api: Api) -> None:
        response = api.client.get("/v1/sessions", headers=api.as_user("olga"))
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        first, second = response.json()["sessions"]
        assert [first["session_id"], second["session_id"]] == ["0f0f0f0f0f0f", "a1b2c3d4e5f6"]
        expected = api.sessions.live["a1b2c3d4e5f6"]
        started = datetime.fromisoformat(second.pop("started_at"))
        assert started.tzinfo is not None
        assert started.timestamp() == pytest.approx(expected.started_at, abs=1e-3)
        assert 90 <= second.pop("age_seconds") < 120
        assert second == {
            "session_id": "a1b2c3d4e5f6",
            "user": "carol",
            "groups": ["analysts"],
            "identity_kind": "human",
            "source_ip": "10.1.2.3",
            "source_port": 50123,
            "target": "shop",
            "upstream_role": "bastion_app",
            "application_name": "psql",
            "tls_version": "TLSv1.3",
            "statements": 4,
            "transaction": "in transaction",
            "waiting": "",
        }
        assert 3600 <= first["age_seconds"] < 3630
        assert first["waiting"] == "approval 7"

    def test_an_empty_list(self, api: Api) -> None:
        api.sessions.live.clear()
        response = api.client.get("/v1/sessions", headers=api.as_user("olga"))
        assert response.json() == {"sessions": []}

    def test_show_one(self, api: Api) -> None:
        response = api.client.get("/v1/sessions/0f0f0f0f0f0f", headers=api.as_user("olga"))
        assert response.status_code == 200
        assert response.json()["user"] == "dave"

    @pytest.mark.parametrize("session_id", ["ffffffffffff", "x" * 65, "%E2%80%AE"])
    def test_unknown_sessions_are_404(self, api: Api, session_id: str) -> None:
        headers = api.as_user("olga")
        shown = api.client.get(f"/v1/sessions/{session_id}", headers=headers)
        assert shown.status_code == 404
        assert shown.json()["error"] == "session_not_found"
        ended = api.client.post(
            f"/v1/sessions/{session_id}/terminate", json={"reason": "x"}, headers=headers
        )
        assert ended.status_code == 404
        assert api.recorded[-1][0] == "login"  # nothing ended, nothing recorded


class TestTerminate:
    def test_an_operator_ends_a_session_and_it_is_recorded(self, api: Api) -> None:
        response = api.client.post(
            "/v1/sessions/a1b2c3d4e5f6/terminate",
            json={"reason": "runaway report, ticket OPS-7"},
            headers=api.as_user("olga"),
        )
        assert response.status_code == 200, response.text
        ended = response.json()
        assert ended["session_id"] == "a1b2c3d4e5f6"
        assert ended["user"] == "carol"
        assert ended["transaction"] == "in transaction"
        assert api.sessions.ended == [("a1b2c3d4e5f6", "runaway report, ticket OPS-7")]
        assert api.recorded[-1] == (
            "session_terminated",
            {
                "actor": "olga",
                "session_id": "a1b2c3d4e5f6",
                "user": "carol",
                "target": "shop",
                "reason": "runaway report, ticket OPS-7",
            },
        )
        listed = api.client.get("/v1/sessions", headers=api.as_user("olga")).json()
        assert [s["session_id"] for s in listed["sessions"]] == ["0f0f0f0f0f0f"]
        again = api.client.post(
            "/v1/sessions/a1b2c3d4e5f6/terminate",
            json={"reason": "again"},
            headers=api.as_user("olga"),
        )
        assert again.status_code == 404

    @pytest.mark.parametrize(
        "body",
        [
            b"",
            b"not json",
            b'{"reason": ""}',
            b'{"reason": "   "}',
            b'{"reason": 5}',
            b'{"comment": "why not"}',
            b'{"reason": "line one\\nline two"}',
            b'{"reason": "esc \\u001b[2J"}',
            ('{"reason": "' + "x" * (MAX_REASON_LENGTH + 1) + '"}').encode(),
        ],
    )
    def test_a_reason_of_one_line_is_required(self, api: Api, body: bytes) -> None:
        response = api.client.post(
            "/v1/sessions/a1b2c3d4e5f6/terminate", content=body, headers=api.as_user("olga")
        )
        assert response.status_code == 400
        assert set(response.json()) == {"error", "message"}
        assert api.sessions.ended == []

    def test_the_longest_reason_is_accepted(self, api: Api) -> None:
        reason = "é" * MAX_REASON_LENGTH
        response = api.client.post(
            "/v1/sessions/a1b2c3d4e5f6/terminate",
            json={"reason": reason},
            headers=api.as_user("olga"),
        )
        assert response.status_code == 200
        assert api.sessions.ended == [("a1b2c3d4e5f6", reason)]


class TestRecords:
    def test_logins_are_recorded_with_their_outcome_never_the_password(self, api: Api) -> None:
        assert api.login("bob").status_code == 200
        assert api.login("bob", "wrong-pw").status_code == 401
        assert api.login("zed", "wrong-pw").status_code == 401
        assert api.login("bob", "wrong-pw").status_code == 429
        assert api.recorded == [
            ("login", {"user": "bob", "outcome": "ok", "source_address": "127.0.0.1"}),
            ("login", {"user": "bob", "outcome": "failed", "source_address": "127.0.0.1"}),
            ("login", {"user": "zed", "outcome": "failed", "source_address": "127.0.0.1"}),
            ("login", {"user": "bob", "outcome": "throttled", "source_address": "127.0.0.1"}),
        ]
        assert "pw" not in repr(api.recorded)

    def test_malformed_logins_are_not_recorded(self, api: Api) -> None:
        assert api.client.post("/v1/login", content=b"nonsense").status_code == 400
        assert api.recorded == []

    def test_logouts_are_recorded(self, api: Api) -> None:
        headers = api.as_user("bob")
        assert api.client.post("/v1/logout", headers=headers).status_code == 200
        assert api.client.post("/v1/logout", headers=headers).status_code == 401
        assert api.recorded[1:] == [
            ("logout", {"user": "bob", "source_address": "127.0.0.1"}),
        ]

    def test_votes_are_left_to_the_approval_record(self, api: Api) -> None:
        now = datetime.now(UTC)
        draft = request_draft(now, "DELETE FROM t", requester="carol", parameters=())
        request = api.store.create(draft, now)
        voted = api.client.post(f"/v1/approvals/{request.id}/approve", headers=api.as_user("bob"))
        assert voted.status_code == 200
        assert api.actions() == ["login"]


class TestOpenApi:
    def test_every_mounted_route_is_described_and_nothing_else(self, api: Api) -> None:
        document = api.client.get("/openapi.json").json()
        described = described_routes(api.app, document)
        assert described["/v1/sessions/{id}/terminate"] == {"post"}
        check_openapi(document)
        body = document["components"]["schemas"]["TerminateBody"]
        assert body["properties"]["reason"]["maxLength"] == MAX_REASON_LENGTH
        session = document["components"]["schemas"]["Session"]
        listed = api.client.get("/v1/sessions", headers=api.as_user("olga")).json()
        assert set(session["properties"]) == set(listed["sessions"][0])

"""The approvals endpoints of the admin app, over a real ApprovalService, SQLite store and
identity directory, through Starlette's test client."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from admin.harness import (
    SECRET,
    Client,
    Ready,
    check_openapi,
    described_routes,
    password_user,
    request_draft,
)
from bastion.admin.api import build_admin_app
from bastion.admin.approval_page import approval_links
from bastion.admin.auth import ApiAuthenticator
from bastion.approvals.model import ApprovalRequest
from bastion.approvals.service import ApprovalService, ApprovalSettings
from bastion.approvals.sqlite_store import SQLiteApprovalStore
from bastion.identity.directory import IdentityDirectory
from bastion.identity.ratelimit import AuthRateLimiter
from bastion.identity.records import OidcIssuer
from bastion.observability.metrics import BastionMetrics
from identity.tokens import AUDIENCE, ISSUER, SigningKeyPair, claims, jwks, write_jwks

USERS = [
    password_user("alice", "dba"),
    password_user("bob", "dba", "oncall"),
    password_user("carol", "analysts"),
    password_user("dave", "dba"),
]
PROTECTED = [
    ("GET", "/v1/whoami"),
    ("GET", "/v1/approvals"),
    ("GET", "/v1/approvals/1"),
    ("POST", "/v1/approvals/1/approve"),
    ("POST", "/v1/approvals/1/deny"),
]


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


class Api:
    """The admin app over real parts, a test client, and helpers to make requests and log in."""

    def __init__(self, tmp_path: Path, issuers: list[OidcIssuer] | None = None) -> None:
        self.clock = Clock()
        self.store = SQLiteApprovalStore(tmp_path / "state.db")
        self.service = ApprovalService(self.store, ApprovalSettings(), clock=self.clock)
        self.directory = IdentityDirectory(USERS, issuers or [], SECRET)
        self.auth = ApiAuthenticator(
            self.service,
            lambda: self.directory,
            rate_limiter=AuthRateLimiter(max_failures=3),
            clock=self.clock,
        )
        self.app = build_admin_app(
            Ready(),
            BastionMetrics(),
            approvals=self.service,
            auth=self.auth,
            public_url="https://bastion.example.com/admin/",
        )
        self.client = Client(self.app)
        self._tokens: dict[str, str] = {}

    def close(self) -> None:
        self.client.close()
        self.store.close()

    def token(self, user: str) -> str:
        if user not in self._tokens:
            response = self.client.post("/v1/login", json={"user": user, "password": f"{user}-pw"})
            assert response.status_code == 200, response.text
            self._tokens[user] = response.json()["token"]
        return self._tokens[user]

    def as_user(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user)}"}

    def create(
        self,
        statement: str = "DELETE FROM orders WHERE id = $1",
        *,
        requester: str = "dave",
        parameters: tuple[str | None, ...] = ("7",),
        approver_groups: tuple[str, ...] = ("dba",),
        min_approvals: int = 1,
    ) -> ApprovalRequest:
        draft = request_draft(
            self.clock.now,
            statement,
            requester=requester,
            parameters=parameters,
            approver_groups=approver_groups,
            min_approvals=min_approvals,
        )
        return self.store.create(draft, self.clock.now)

    def vote(self, user: str, request_id: int, verdict: str, **body: Any) -> Any:
        return self.client.post(
            f"/v1/approvals/{request_id}/{verdict}",
            headers=self.as_user(user),
            json=body or None,
        )


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    made = Api(tmp_path)
    yield made
    made.close()


@pytest.fixture(scope="module")
def rsa_key() -> SigningKeyPair:
    return SigningKeyPair("rsa-1", "RS256", rsa.generate_private_key(65537, 2048))


class TestAuthentication:
    @pytest.mark.parametrize(("method", "path"), PROTECTED)
    def test_requests_without_a_token_get_401_and_a_challenge(
        self, api: Api, method: str, path: str
    ) -> None:
        api.create()
        response = api.client.request(method, path)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["error"] == "unauthorized"

    @pytest.mark.parametrize(("method", "path"), PROTECTED)
    def test_bad_tokens_get_401(self, api: Api, method: str, path: str) -> None:
        api.create()
        for header in ("Bearer bst_nonsense", "Bearer a.b.c", "Basic YWxpY2U6YWxpY2UtcHc="):
            response = api.client.request(method, path, headers={"Authorization": header})
            assert response.status_code == 401, header

    def test_an_expired_token_gets_401(self, api: Api) -> None:
        headers = api.as_user("alice")
        assert api.client.get("/v1/whoami", headers=headers).status_code == 200
        api.clock.now += timedelta(hours=12, seconds=1)
        assert api.client.get("/v1/whoami", headers=headers).status_code == 401

    def test_a_revoked_token_gets_401(self, api: Api) -> None:
        headers = api.as_user("alice")
        response = api.client.post("/v1/logout", headers=headers)
        assert response.status_code == 200
        assert response.json() == {"revoked": True}
        assert api.client.get("/v1/whoami", headers=headers).status_code == 401
        assert api.client.post("/v1/logout", headers=headers).status_code == 401

    def test_whoami(self, api: Api) -> None:
        response = api.client.get("/v1/whoami", headers=api.as_user("bob"))
        assert response.json() == {"name": "bob", "groups": ["dba", "oncall"]}

    def test_an_oidc_token_authenticates(self, tmp_path: Path, rsa_key: SigningKeyPair) -> None:
        path = write_jwks(tmp_path / "jwks.json", jwks(rsa_key))
        issuer = OidcIssuer(name="corp", issuer=ISSUER, audience=AUDIENCE, jwks_file=path)
        (tmp_path / "oidc").mkdir()
        api = Api(tmp_path / "oidc", [issuer])
        try:
            request = api.create()
            token = rsa_key.mint(claims(preferred_username="erin", groups=["dba"]))
            headers = {"Authorization": f"Bearer {token}"}
            whoami = api.client.get("/v1/whoami", headers=headers).json()
            assert whoami == {"name": "erin", "groups": ["dba"]}
            response = api.client.post(f"/v1/approvals/{request.id}/approve", headers=headers)
            assert response.json()["state"] == "approved"
        finally:
            api.close()


class TestLogin:
    def test_success_returns_the_token_once(self, api: Api) -> None:
        response = api.client.post("/v1/login", json={"user": "alice", "password": "alice-pw"})
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"token", "token_id", "user", "expires_at"}
        assert body["user"] == "alice"
        assert body["token"].startswith("bst_")
        assert datetime.fromisoformat(body["expires_at"]) == api.clock.now + timedelta(hours=12)
        assert response.headers["cache-control"] == "no-store"

    def test_wrong_password_and_unknown_user_get_the_same_answer(self, api: Api) -> None:
        wrong = api.client.post("/v1/login", json={"user": "alice", "password": "nope"})
        unknown = api.client.post("/v1/login", json={"user": "zed", "password": "alice-pw"})
        assert wrong.status_code == unknown.status_code == 401
        assert wrong.json() == unknown.json()
        assert wrong.json()["error"] == "login_failed"
        assert "zed" not in unknown.text

    def test_repeated_failures_are_rate_limited(self, api: Api) -> None:
        for _ in range(3):
            response = api.client.post("/v1/login", json={"user": "alice", "password": "x"})
            assert response.status_code == 401
        response = api.client.post("/v1/login", json={"user": "alice", "password": "alice-pw"})
        assert response.status_code == 429
        assert response.json()["error"] == "login_throttled"
        assert response.headers["retry-after"] == "60"

    @pytest.mark.parametrize(
        ("body", "status"),
        [
            (b"", 400),
            (b"not json", 400),
            (b"[1, 2]", 400),
            (b'{"user": "alice"}', 400),
            (b'{"user": "alice", "password": 5}', 400),
            (b'{"user": "", "password": "alice-pw"}', 400),
            (json.dumps({"user": "alice", "password": "x" * 70000}).encode(), 413),
        ],
    )
    def test_malformed_bodies(self, api: Api, body: bytes, status: int) -> None:
        response = api.client.post("/v1/login", content=body)
        assert response.status_code == status
        assert set(response.json()) == {"error", "message"}


class TestReading:
    def test_list_shows_pending_requests_by_default(self, api: Api) -> None:
        first = api.create("DELETE FROM a")
        second = api.create("DELETE FROM b")
        api.vote("alice", first.id, "deny", comment="no")
        headers = api.as_user("carol")
        pending = api.client.get("/v1/approvals", headers=headers).json()["approvals"]
        assert [r["id"] for r in pending] == [second.id]
        everything = api.client.get("/v1/approvals?state=all", headers=headers).json()
        assert [r["id"] for r in everything["approvals"]] == [second.id, first.id]
        denied = api.client.get("/v1/approvals?state=denied,approved", headers=headers).json()
        assert [r["id"] for r in denied["approvals"]] == [first.id]
        one = api.client.get("/v1/approvals?state=all&limit=1", headers=headers).json()
        assert len(one["approvals"]) == 1

    @pytest.mark.parametrize("query", ["state=bogus", "limit=0", "limit=501", "limit=x"])
    def test_bad_list_queries(self, api: Api, query: str) -> None:
        response = api.client.get(f"/v1/approvals?{query}", headers=api.as_user("carol"))
        assert response.status_code == 400
        assert response.json()["error"] == "bad_request"

    def test_show_returns_every_field(self, api: Api) -> None:
        request = api.create(parameters=("7", None))
        body = api.client.get(f"/v1/approvals/{request.id}", headers=api.as_user("carol")).json()
        assert body == {
            "id": request.id,
            "state": "pending",
            "requester": "dave",
            "requester_groups": ["dba"],
            "source_address": "10.1.2.3",
            "target": "prod",
            "statement": "DELETE FROM orders WHERE id = $1",
            "parameters": ["7", None],
            "fingerprint": "fp-1",
            "grant_key": request.grant_key,
            "rule": "prod-writes",
            "policy_reason": "writes on production need a second pair of eyes",
            "reason": "ticket OPS-42",
            "approver_groups": ["dba"],
            "min_approvals": 1,
            "approvals": [],
            "session_id": "s-1",
            "created_at": api.clock.now.isoformat(),
            "expires_at": (api.clock.now + timedelta(hours=1)).isoformat(),
            "decided_at": None,
            "grant_expires_at": None,
            "executed_at": None,
            "state_reason": "",
            "votes": [],
        }

    def test_unknown_requests_are_404(self, api: Api) -> None:
        for request_id in ("999", str(2**70)):
            response = api.client.get(f"/v1/approvals/{request_id}", headers=api.as_user("carol"))
            assert response.status_code == 404
            assert response.json()["error"] == "request_not_found"
        assert api.vote("alice", 999, "approve").status_code == 404

    def test_no_token_material_is_ever_returned(self, api: Api) -> None:
        token = api.token("alice")
        request = api.create()
        api.vote("alice", request.id, "approve")
        (record,) = api.store.list_tokens()
        for path in ("/v1/whoami", "/v1/approvals?state=all", f"/v1/approvals/{request.id}"):
            text = api.client.get(path, headers=api.as_user("alice")).text
            assert token not in text
            assert record.digest not in text

    def test_a_failing_store_is_503_without_details(self, api: Api) -> None:
        headers = api.as_user("alice")
        api.store.close()
        response = api.client.get("/v1/approvals", headers=headers)
        assert response.status_code == 503
        assert response.json()["error"] == "state_store_error"
        assert str(api.store.path) not in response.text


class TestVoting:
    def test_a_member_approves(self, api: Api) -> None:
        request = api.create()
        response = api.vote("alice", request.id, "approve", comment="checked the ticket")
        assert response.status_code == 200
        body = response.json()
        assert body["state"] == "approved"
        assert body["approvals"] == ["alice"]
        assert body["grant_expires_at"] is not None
        (vote,) = body["votes"]
        assert vote["approver"] == "alice"
        assert vote["verdict"] == "approve"
        assert vote["comment"] == "checked the ticket"
        assert datetime.fromisoformat(vote["at"]) == api.clock.now

    def test_an_empty_body_is_a_vote_without_comment(self, api: Api) -> None:
        request = api.create()
        response = api.client.post(
            f"/v1/approvals/{request.id}/approve", headers=api.as_user("bob")
        )
        assert response.status_code == 200
        assert response.json()["votes"][0]["comment"] == ""

    def test_self_approval_is_403(self, api: Api) -> None:
        request = api.create(requester="dave")
        response = api.vote("dave", request.id, "approve")
        assert response.status_code == 403
        assert response.json()["error"] == "self_approval"

    def test_non_members_are_403(self, api: Api) -> None:
        request = api.create(approver_groups=("dba",))
        response = api.vote("carol", request.id, "approve")
        assert response.status_code == 403
        assert response.json()["error"] == "not_an_approver"
        assert "dba" in response.json()["message"]

    def test_a_second_vote_by_the_same_person_is_409(self, api: Api) -> None:
        request = api.create(min_approvals=2)
        first = api.vote("alice", request.id, "approve")
        assert first.json()["state"] == "pending"
        again = api.vote("alice", request.id, "approve")
        assert again.status_code == 409
        assert again.json()["error"] == "already_voted"
        assert api.vote("bob", request.id, "approve").json()["state"] == "approved"

    def test_deny_with_a_comment(self, api: Api) -> None:
        request = api.create(min_approvals=2)
        response = api.vote("bob", request.id, "deny", comment="not during the sale")
        body = response.json()
        assert body["state"] == "denied"
        assert body["state_reason"] == "not during the sale"
        assert body["votes"][0]["verdict"] == "deny"
        closed = api.vote("alice", request.id, "approve")
        assert closed.status_code == 409
        assert closed.json()["error"] == "request_closed"

    @pytest.mark.parametrize(
        "body", [b'{"comment": 5}', b"[]", b"{", b'{"comment": "' + b"x" * 2001 + b'"}']
    )
    def test_malformed_vote_bodies_are_400(self, api: Api, body: bytes) -> None:
        request = api.create()
        response = api.client.post(
            f"/v1/approvals/{request.id}/approve", headers=api.as_user("alice"), content=body
        )
        assert response.status_code == 400
        assert api.store.get(request.id).votes == ()  # type: ignore[union-attr]


class TestOpenApi:
    def test_every_mounted_route_is_described_and_nothing_else(self, api: Api) -> None:
        document = api.client.get("/openapi.json").json()
        described = described_routes(api.app, document)
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/v1/login"):
            assert path in described

    def test_the_document_is_structurally_valid(self, api: Api) -> None:
        document = api.client.get("/openapi.json").json()
        check_openapi(document)
        assert document["servers"] == [{"url": "https://bastion.example.com/admin"}]
        try:
            from openapi_spec_validator import validate  # type: ignore[import-not-found]
        except ImportError:
            return
        validate(document)  # pragma: no cover - only where the validator is installed

    def test_without_approvals_only_the_service_routes_are_described(self) -> None:
        client = Client(build_admin_app(Ready()))
        try:
            document = client.get("/openapi.json").json()
            assert client.get("/v1/approvals").status_code == 404
        finally:
            client.close()
        assert set(document["paths"]) == {"/healthz", "/readyz", "/openapi.json"}
        assert "servers" not in document
        check_openapi(document)

    def test_approvals_and_auth_come_together(self, api: Api) -> None:
        with pytest.raises(ValueError):
            build_admin_app(Ready(), approvals=api.service)


class TestPage:
    STATEMENT = "DELETE FROM t WHERE note = '</pre><script>alert(1)</script>'"

    def test_the_page_holds_no_request_data_and_locks_itself_down(self, api: Api) -> None:
        request = api.create(self.STATEMENT)
        response = api.client.get(f"/approvals/{request.id}")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        page = response.text
        # Nothing of the request is served without a token; the script fetches it.
        assert "alert(1)" not in page
        assert "OPS-42" not in page
        assert page.count("<script") == 1
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in page
        assert not re.search(r"<(link|img|iframe)\b|https?://", page)
        policy = response.headers["content-security-policy"]
        nonce = re.search(r"'nonce-([^']+)'", policy)
        assert nonce is not None
        assert f'<script nonce="{nonce[1]}">' in page
        assert f'<style nonce="{nonce[1]}">' in page
        assert "unsafe-inline" not in policy
        assert "default-src 'none'" in policy
        assert "frame-ancestors 'none'" in policy
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store"
        other = api.client.get(f"/approvals/{request.id}").headers["content-security-policy"]
        assert other != policy  # a fresh nonce every time

    def test_the_action_parameter_is_whitelisted(self, api: Api) -> None:
        page = api.client.get('/approvals/1?action="><script>x</script>').text
        assert 'data-action=""' in page
        assert page.count("<script") == 1
        assert 'data-action="deny"' in api.client.get("/approvals/1?action=deny").text

    def test_the_json_api_returns_the_statement_verbatim(self, api: Api) -> None:
        request = api.create(self.STATEMENT)
        response = api.client.get(f"/v1/approvals/{request.id}", headers=api.as_user("bob"))
        assert response.json()["statement"] == self.STATEMENT
        assert response.headers["content-type"] == "application/json"
        assert response.headers["x-content-type-options"] == "nosniff"

    def test_notification_links_open_the_page(self, api: Api) -> None:
        view, approve, deny = approval_links("https://bastion.example.com/admin/")(7)
        assert view == "https://bastion.example.com/admin/approvals/7"
        assert approve == view + "?action=approve"
        assert deny == view + "?action=deny"

    @pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
    def test_the_script_renders_the_statement_as_text_and_votes(
        self, api: Api, tmp_path: Path
    ) -> None:
        request = api.create(self.STATEMENT + "\u202e", parameters=("<b>7</b>", None))
        document = api.client.get(f"/v1/approvals/{request.id}", headers=api.as_user("bob")).json()
        page = api.client.get(f"/approvals/{request.id}?action=approve").text
        script = re.search(r"<script[^>]*>(.*)</script>", page, re.S)
        assert script is not None
        ids = re.findall(r'\bid="([^"]+)"', page)
        result = run_page_script(tmp_path, script[1], ids, request.id, document)
        assert result["statement"] == self.STATEMENT + "\\u202e"
        assert result["parameters"] == ["<b>7</b>", "NULL"]
        assert result["hidden"] == {"signin": True, "request": False, "decide": False}
        assert result["suggested"] == ["suggested"]
        get, post = result["calls"]
        assert get == {
            "url": f"../v1/approvals/{request.id}",
            "method": "GET",
            "authorization": "Bearer bst_from_storage",
            "body": None,
        }
        assert post["url"] == f"../v1/approvals/{request.id}/approve"
        assert post["method"] == "POST"
        assert json.loads(post["body"]) == {"comment": "fine by me"}
        assert result["message"] == "Your approval was recorded; the request is now pending."


_HARNESS = r"""
const vm = require("vm");
const [script, ids, requestId, documentJson] = JSON.parse(require("fs").readFileSync(0, "utf8"));
const request = JSON.parse(documentJson);
function element(id) {
  const node = {
    id, hidden: false, value: "", dataset: {}, children: [], listeners: {}, classes: [],
    classList: {add: (name) => node.classes.push(name)},
    addEventListener(type, listener) { this.listeners[type] = listener; },
    appendChild(child) { this.children.push(child); },
    replaceChildren() { this.children = []; },
    _text: "",
    get textContent() { return this._text; },
    set textContent(value) { this._text = String(value); },
  };
  Object.defineProperty(node, "innerHTML", {set() { throw new Error("innerHTML used"); }});
  return node;
}
const elements = Object.fromEntries(ids.map((id) => [id, element(id)]));
elements.app.dataset = {requestId: String(requestId), action: "approve"};
const storage = {"bastion-token": "bst_from_storage"};
const calls = [];
const context = {
  document: {getElementById: (id) => elements[id] || null, createElement: (tag) => element(tag)},
  sessionStorage: {
    getItem: (key) => (key in storage ? storage[key] : null),
    setItem: (key, value) => { storage[key] = value; },
    removeItem: (key) => { delete storage[key]; },
  },
  fetch: async (url, init) => {
    calls.push({url, method: init.method, authorization: init.headers.Authorization || null,
                body: init.body === undefined ? null : init.body});
    return {ok: true, status: 200, json: async () => request};
  },
  String, JSON, Error, Object,
};
vm.createContext(context);
vm.runInContext(script, context);
setTimeout(async () => {
  const hidden = {signin: elements.signin.hidden, request: elements.request.hidden,
                  decide: elements.decide.hidden};
  elements.comment.value = "fine by me";
  await elements.approve.listeners.click();
  console.log(JSON.stringify({
    statement: elements.statement.textContent,
    parameters: elements.parameters.children.map((c) => c.textContent),
    hidden,
    suggested: elements.approve.classes,
    calls,
    message: elements.message.textContent,
  }));
}, 50);
"""


def run_page_script(
    tmp_path: Path, script: str, ids: list[str], request_id: int, document: dict[str, Any]
) -> Any:
    harness = tmp_path / "harness.js"
    harness.write_text(_HARNESS)
    node = shutil.which("node")
    assert node is not None
    completed = subprocess.run(
        [node, str(harness)],
        input=json.dumps([script, ids, request_id, json.dumps(document)]),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)

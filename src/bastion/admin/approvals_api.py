"""The approvals part of the admin API: login, list, show, approve and deny, as JSON and as a
small HTML page for the links in notifications.

Every route but login needs a bearer token (see `auth.py`); votes go through `ApprovalService`,
whose rules decide who may vote, and an `ApprovalError` becomes its HTTP status with a JSON body
`{"error": ..., "message": ...}`. Responses never carry secrets: login returns its new token once,
and token digests are never returned at all. The HTML page is a shell that fetches the request
with the token kept in the browser's sessionStorage and renders it with `textContent` only, so
nothing about a request is shown to anyone without a token, and no part of a statement can
become markup. This module also describes its routes for the OpenAPI document (`api.py`).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bastion.admin.auth import ApiAuthenticator
from bastion.approvals.errors import ApprovalError, RequestNotFound, StateStoreError
from bastion.approvals.model import ApprovalRequest, ApprovalState, Approver, Verdict
from bastion.approvals.notify import Links
from bastion.approvals.service import ApprovalService
from bastion.identity.directory import MAX_PASSWORD_LENGTH

log = logging.getLogger("bastion.admin")

MAX_BODY_BYTES = 64 * 1024
MAX_COMMENT_LENGTH = 2000
MAX_NAME_LENGTH = 256
DEFAULT_LIST_LIMIT = 50
MAX_LIST_LIMIT = 500
_MAX_ID = 2**63 - 1  # larger ids cannot exist, and SQLite cannot even be asked about them
_NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="bastion"', **_NO_STORE}


class BadRequest(ApprovalError):
    status = 400


class Unauthorized(ApprovalError):
    status = 401


class PayloadTooLarge(ApprovalError):
    status = 413


def approval_routes(service: ApprovalService, auth: ApiAuthenticator) -> list[BaseRoute]:
    """The routes this module serves, for `build_admin_app` to mount."""
    api = _ApprovalsApi(service, auth)
    return [
        Route("/v1/login", api.login, methods=["POST"]),
        Route("/v1/logout", api.logout, methods=["POST"]),
        Route("/v1/whoami", api.whoami, methods=["GET"]),
        Route("/v1/approvals", api.list_requests, methods=["GET"]),
        Route("/v1/approvals/{id:int}", api.show_request, methods=["GET"]),
        Route("/v1/approvals/{id:int}/approve", api.approve, methods=["POST"]),
        Route("/v1/approvals/{id:int}/deny", api.deny, methods=["POST"]),
        Route("/approvals/{id:int}", api.page, methods=["GET"]),
    ]


def approval_links(public_url: str) -> Links:
    """Links for notifications (`notify.Links`): request id -> (view, approve, deny) URLs.

    All three open the HTML page; approve and deny only preselect the button there, since a
    link followed by a chat client's preview must never vote.
    """
    base = public_url.rstrip("/")

    def links(request_id: int) -> tuple[str, str, str]:
        page = f"{base}/approvals/{request_id}"
        return page, f"{page}?action=approve", f"{page}?action=deny"

    return links


def request_document(request: ApprovalRequest) -> dict[str, Any]:
    """The JSON form of a request: every field, ISO 8601 times, votes in order."""
    return {
        "id": request.id,
        "state": request.state.value,
        "requester": request.requester,
        "requester_groups": list(request.requester_groups),
        "source_address": request.source_address,
        "target": request.target,
        "statement": request.statement,
        "parameters": list(request.parameters),
        "fingerprint": request.fingerprint,
        "grant_key": request.grant_key,
        "rule": request.rule,
        "policy_reason": request.policy_reason,
        "reason": request.reason,
        "approver_groups": list(request.approver_groups),
        "min_approvals": request.min_approvals,
        "approvals": list(request.approvals),
        "session_id": request.session_id,
        "created_at": _iso(request.created_at),
        "expires_at": _iso(request.expires_at),
        "decided_at": _iso(request.decided_at),
        "grant_expires_at": _iso(request.grant_expires_at),
        "executed_at": _iso(request.executed_at),
        "state_reason": request.state_reason,
        "votes": [
            {
                "approver": vote.approver,
                "verdict": vote.verdict.value,
                "comment": vote.comment,
                "at": _iso(vote.at),
            }
            for vote in request.votes
        ],
    }


def error_response(exc: ApprovalError) -> JSONResponse:
    """An ApprovalError as `{"error": "<snake_case class name>", "message": ...}`."""
    message = exc.message
    if isinstance(exc, StateStoreError):
        # The detail (a file path, a host name) is for the operator's log, not for callers.
        log.warning("approval state store failed", extra={"fields": {"error": exc.message}})
        message = "the approval state store is unavailable; try again later"
    headers = _CHALLENGE if exc.status == 401 else _NO_STORE
    if exc.status == 429:
        headers = {**headers, "Retry-After": "60"}
    return JSONResponse(
        {"error": _snake_case(type(exc).__name__), "message": message},
        status_code=exc.status,
        headers=headers,
    )


class _ApprovalsApi:
    def __init__(self, service: ApprovalService, auth: ApiAuthenticator) -> None:
        self._service = service
        self._auth = auth

    async def login(self, request: Request) -> Response:
        try:
            body = await _json_body(request, required=True)
            user = _string(body, "user", MAX_NAME_LENGTH, required=True)
            password = _string(body, "password", MAX_PASSWORD_LENGTH, required=True)
            source = request.client.host if request.client is not None else "unknown"
            token, record = await self._auth.login(user, password, source_address=source)
        except ApprovalError as exc:
            return error_response(exc)
        return _json(
            {
                "token": token,
                "token_id": record.id,
                "user": record.user,
                "expires_at": _iso(record.expires_at),
            }
        )

    async def logout(self, request: Request) -> Response:
        try:
            if not await self._auth.logout(request.headers.get("authorization")):
                raise Unauthorized("no live admin API token was presented")
        except ApprovalError as exc:
            return error_response(exc)
        return _json({"revoked": True})

    async def whoami(self, request: Request) -> Response:
        try:
            approver = await self._approver(request)
        except ApprovalError as exc:
            return error_response(exc)
        return _json({"name": approver.name, "groups": list(approver.groups)})

    async def list_requests(self, request: Request) -> Response:
        try:
            await self._approver(request)
            states = _states(request.query_params.get("state", ApprovalState.PENDING.value))
            limit = _limit(request.query_params.get("limit"))
            found = await self._service.list(states, limit)
        except ApprovalError as exc:
            return error_response(exc)
        return _json({"approvals": [request_document(r) for r in found]})

    async def show_request(self, request: Request) -> Response:
        try:
            await self._approver(request)
            request_id = _request_id(request)
            found = await self._service.get(request_id)
            if found is None:
                raise RequestNotFound(f"there is no approval request {request_id}")
        except ApprovalError as exc:
            return error_response(exc)
        return _json(request_document(found))

    async def approve(self, request: Request) -> Response:
        return await self._vote(request, Verdict.APPROVE)

    async def deny(self, request: Request) -> Response:
        return await self._vote(request, Verdict.DENY)

    async def page(self, request: Request) -> Response:
        request_id = request.path_params["id"]
        action = request.query_params.get("action", "")
        nonce = secrets.token_urlsafe(16)
        body = (
            _PAGE.replace("__NONCE__", nonce)
            .replace("__ID__", str(int(request_id)))
            # Only the two known values reach the page, so nothing else needs escaping there.
            .replace("__ACTION__", action if action in ("approve", "deny") else "")
        )
        return HTMLResponse(body, headers=_page_headers(nonce))

    async def _vote(self, request: Request, verdict: Verdict) -> Response:
        try:
            approver = await self._approver(request)
            request_id = _request_id(request)
            body = await _json_body(request, required=False)
            comment = _string(body, "comment", MAX_COMMENT_LENGTH, required=False)
            decided = await self._service.vote(request_id, approver, verdict, comment)
        except ApprovalError as exc:
            return error_response(exc)
        return _json(request_document(decided))

    async def _approver(self, request: Request) -> Approver:
        approver = await self._auth.authenticate(request.headers.get("authorization"))
        if approver is None:
            raise Unauthorized(
                "a valid bearer token is required (POST /v1/login, or `bastion login USER`)"
            )
        return approver


# Request parsing.


async def _json_body(request: Request, *, required: bool) -> dict[str, Any]:
    """The body as a JSON object; an empty body is `{}` unless `required`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request bodies are limited to {MAX_BODY_BYTES} bytes")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"request bodies are limited to {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        if required:
            raise BadRequest("a JSON object body is required")
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def _string(body: dict[str, Any], key: str, max_length: int, *, required: bool) -> str:
    value = body.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise BadRequest(f"`{key}` must be a non-empty string")
    if len(value) > max_length:
        raise BadRequest(f"`{key}` is longer than {max_length} characters")
    return value


def _request_id(request: Request) -> int:
    request_id = int(request.path_params["id"])
    if request_id > _MAX_ID:
        raise RequestNotFound(f"there is no approval request {request_id}")
    return request_id


def _states(value: str) -> tuple[ApprovalState, ...]:
    """`all`, one state, or several separated by commas."""
    if value.strip() == "all":
        return ()
    try:
        return tuple(ApprovalState(part.strip()) for part in value.split(","))
    except ValueError:
        choices = ", ".join(state.value for state in ApprovalState)
        raise BadRequest(f"`state` must be all, or one or more of {choices}") from None


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIST_LIMIT
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIST_LIMIT:
        raise BadRequest(f"`limit` must be a whole number from 1 to {MAX_LIST_LIMIT}")
    return int(value)


# Responses.


def _json(document: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(document, status_code=status, headers=_NO_STORE)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _page_headers(nonce: str) -> dict[str, str]:
    policy = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return {
        "Content-Security-Policy": policy,
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


# The page. It holds no request data: the script fetches it with the visitor's token and writes
# it with textContent only (never innerHTML), so a statement containing markup stays text.
# Paths are relative ("../v1/"), so the page also works behind a reverse proxy's path prefix.
_PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Bastion approval request __ID__</title>
<style nonce="__NONCE__">
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:56rem;padding:1rem 1.5rem;
  color:#1d2330}
pre{background:#f3f4f7;padding:.75rem;white-space:pre-wrap;word-break:break-word}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.3rem 1rem}
dt{font-weight:600}
dd{margin:0}
fieldset{border:1px solid #ccd;margin:1rem 0;padding:.75rem}
label{display:block}
textarea,input{display:block;width:100%;box-sizing:border-box;font:inherit;margin:.25rem 0 .5rem}
button{font:inherit;padding:.4rem 1rem;margin-right:.5rem}
#approve{background:#1f7a3a;color:#fff;border:0}
#deny{background:#b3261e;color:#fff;border:0}
.suggested{outline:3px solid #f0b400}
#state{font-weight:700;text-transform:uppercase}
#message{font-weight:600}
[hidden]{display:none}
</style>
</head>
<body>
<main id="app" data-request-id="__ID__" data-action="__ACTION__">
<h1>Approval request #__ID__</h1>
<p id="message" role="status"></p>
<section id="signin" hidden>
<fieldset><legend>Sign in</legend>
<label>Admin API token <input id="token" type="password" autocomplete="off"></label>
<button id="use-token" type="button">Use token</button>
<p>or with your Bastion password:</p>
<label>User <input id="user" autocomplete="username"></label>
<label>Password <input id="password" type="password" autocomplete="current-password"></label>
<button id="login" type="button">Sign in</button>
</fieldset>
</section>
<section id="request" hidden>
<p>State: <span id="state"></span></p>
<h2>Statement</h2>
<pre id="statement"></pre>
<h2>Parameters</h2>
<ol id="parameters"></ol>
<dl id="details"></dl>
<h2>Votes</h2>
<ul id="votes"></ul>
<fieldset id="decide"><legend>Your decision</legend>
<label>Comment <textarea id="comment" rows="3" maxlength="2000"></textarea></label>
<button id="approve" type="button">Approve</button>
<button id="deny" type="button">Deny</button>
</fieldset>
<button id="signout" type="button">Sign out</button>
</section>
</main>
<script nonce="__NONCE__">
"use strict";
(() => {
  const app = document.getElementById("app");
  const id = app.dataset.requestId;
  const storageKey = "bastion-token";
  const el = (name) => document.getElementById(name);
  const say = (message) => { el("message").textContent = message; };
  const token = () => sessionStorage.getItem(storageKey);
  const done = {approve: "approval", deny: "denial"};

  function show(signedIn) {
    el("signin").hidden = signedIn;
    el("request").hidden = !signedIn;
  }

  async function call(method, path, body) {
    const headers = {"Accept": "application/json"};
    if (token()) headers["Authorization"] = "Bearer " + token();
    const init = {method, headers, credentials: "omit", cache: "no-store"};
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch("../v1/" + path, init);
    let data = null;
    try { data = await response.json(); } catch (ignored) { data = null; }
    if (!response.ok) {
      if (response.status === 401 && path !== "login") {
        sessionStorage.removeItem(storageKey);
        show(false);
      }
      throw new Error((data && data.message) || "HTTP " + response.status);
    }
    return data;
  }

  // Control and direction-changing characters are shown as escapes: a statement must not be
  // able to reorder or hide part of itself on screen.
  const visible = (text) => String(text).replace(
    /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]/g,
    (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));

  function add(parent, tag, value) {
    const node = document.createElement(tag);
    node.textContent = visible(value);
    parent.appendChild(node);
  }

  function render(r) {
    el("state").textContent = r.state;
    el("statement").textContent = visible(r.statement);
    const parameters = el("parameters");
    parameters.replaceChildren();
    r.parameters.forEach((p) => add(parameters, "li", p === null ? "NULL" : p));
    if (!r.parameters.length) add(parameters, "li", "(none)");
    const groups = r.requester_groups.length ? " (" + r.requester_groups.join(", ") + ")" : "";
    const rows = [
      ["Requested by", r.requester + groups],
      ["From", r.source_address],
      ["Target", r.target],
      ["Rule", r.rule],
      ["Policy says", r.policy_reason],
      ["Requester's reason", r.reason || "(none given)"],
      ["Approvers", r.approver_groups.join(", ") || "anyone but the requester"],
      ["Approvals", r.approvals.length + " of " + r.min_approvals + " needed"],
      ["Created", r.created_at],
      ["Expires", r.expires_at],
      ["Decided", r.decided_at],
      ["Grant usable until", r.grant_expires_at],
      ["Executed", r.executed_at],
      ["Note", r.state_reason],
    ];
    const details = el("details");
    details.replaceChildren();
    rows.filter((row) => row[1]).forEach(([name, value]) => {
      add(details, "dt", name);
      add(details, "dd", value);
    });
    const votes = el("votes");
    votes.replaceChildren();
    if (!r.votes.length) add(votes, "li", "none yet");
    r.votes.forEach((v) => add(votes, "li",
      v.at + "  " + v.approver + ": " + v.verdict + (v.comment ? " \u2014 " + v.comment : "")));
    el("decide").hidden = r.state !== "pending";
  }

  async function load() {
    if (!token()) { show(false); return; }
    try {
      render(await call("GET", "approvals/" + id));
      show(true);
    } catch (error) { say(error.message); }
  }

  async function vote(verdict) {
    try {
      const r = await call("POST", "approvals/" + id + "/" + verdict,
        {comment: el("comment").value});
      el("comment").value = "";
      render(r);
      say("Your " + done[verdict] + " was recorded; the request is now " + r.state + ".");
    } catch (error) { say(error.message); }
  }

  el("use-token").addEventListener("click", () => {
    const value = el("token").value.trim();
    el("token").value = "";
    if (value) { sessionStorage.setItem(storageKey, value); say(""); load(); }
  });
  el("login").addEventListener("click", async () => {
    try {
      const r = await call("POST", "login",
        {user: el("user").value, password: el("password").value});
      el("password").value = "";
      sessionStorage.setItem(storageKey, r.token);
      say("Signed in as " + r.user + ".");
      load();
    } catch (error) { say(error.message); }
  });
  el("approve").addEventListener("click", () => vote("approve"));
  el("deny").addEventListener("click", () => vote("deny"));
  el("signout").addEventListener("click", async () => {
    try { await call("POST", "logout"); } catch (ignored) { /* signed out locally anyway */ }
    sessionStorage.removeItem(storageKey);
    show(false);
    say("Signed out.");
  });
  const suggested = app.dataset.action;
  if (suggested) el(suggested).classList.add("suggested");
  load();
})();
</script>
</body>
</html>
"""


# The OpenAPI description of these routes, merged into the document `api.py` serves.


def openapi_paths() -> dict[str, Any]:
    request_id = {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
        "description": "The approval request's id.",
    }
    vote_body = {
        "required": False,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/VoteBody"}}},
    }

    def vote(summary: str) -> dict[str, Any]:
        return {
            "summary": summary,
            "operationId": summary.split()[0].lower() + "Request",
            "tags": ["approvals"],
            "security": _BEARER,
            "parameters": [request_id],
            "requestBody": vote_body,
            "responses": {
                "200": _ok("The request after the vote.", "ApprovalRequest"),
                **_errors("400", "401", "403", "404", "409", "503"),
            },
        }

    return {
        "/v1/login": {
            "post": {
                "summary": "Exchange a password user's password for an admin API token",
                "operationId": "login",
                "tags": ["auth"],
                "security": [],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Login"}}
                    },
                },
                "responses": {
                    "200": _ok("The new token, shown only this once.", "LoginResult"),
                    **_errors("400", "401", "413", "429", "503"),
                },
            }
        },
        "/v1/logout": {
            "post": {
                "summary": "Revoke the admin API token presented",
                "operationId": "logout",
                "tags": ["auth"],
                "security": _BEARER,
                "responses": {
                    "200": _ok("The token is revoked.", "LogoutResult"),
                    **_errors("401", "503"),
                },
            }
        },
        "/v1/whoami": {
            "get": {
                "summary": "The approver the bearer token proves",
                "operationId": "whoami",
                "tags": ["auth"],
                "security": _BEARER,
                "responses": {"200": _ok("The approver.", "WhoAmI"), **_errors("401", "503")},
            }
        },
        "/v1/approvals": {
            "get": {
                "summary": "List approval requests, newest first",
                "operationId": "listRequests",
                "tags": ["approvals"],
                "security": _BEARER,
                "parameters": [
                    {
                        "name": "state",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "default": "pending"},
                        "description": "`all`, or one or more states separated by commas: "
                        + ", ".join(state.value for state in ApprovalState),
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MAX_LIST_LIMIT,
                            "default": DEFAULT_LIST_LIMIT,
                        },
                    },
                ],
                "responses": {
                    "200": _ok("The requests.", "ApprovalList"),
                    **_errors("400", "401", "503"),
                },
            }
        },
        "/v1/approvals/{id}": {
            "get": {
                "summary": "One approval request, with its votes",
                "operationId": "getRequest",
                "tags": ["approvals"],
                "security": _BEARER,
                "parameters": [request_id],
                "responses": {
                    "200": _ok("The request.", "ApprovalRequest"),
                    **_errors("401", "404", "503"),
                },
            }
        },
        "/v1/approvals/{id}/approve": {"post": vote("Approve a pending request")},
        "/v1/approvals/{id}/deny": {"post": vote("Deny a pending request (one deny decides)")},
        "/approvals/{id}": {
            "get": {
                "summary": "An HTML page to review and decide a request in a browser",
                "description": "The page holds no request data; its script fetches the request "
                "with a token kept in sessionStorage.",
                "operationId": "requestPage",
                "tags": ["approvals"],
                "security": [],
                "parameters": [
                    request_id,
                    {
                        "name": "action",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": ["approve", "deny"]},
                        "description": "Button to highlight; following the link never votes.",
                    },
                ],
                "responses": {
                    "200": {
                        "description": "The page.",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    }


def openapi_schemas() -> dict[str, Any]:
    time = {"type": "string", "format": "date-time"}
    maybe_time = {"type": ["string", "null"], "format": "date-time"}
    strings = {"type": "array", "items": {"type": "string"}}
    return {
        "Vote": _object(
            approver={"type": "string"},
            verdict={"type": "string", "enum": [verdict.value for verdict in Verdict]},
            comment={"type": "string"},
            at=time,
        ),
        "ApprovalRequest": _object(
            id={"type": "integer"},
            state={"type": "string", "enum": [state.value for state in ApprovalState]},
            requester={"type": "string"},
            requester_groups=strings,
            source_address={"type": "string"},
            target={"type": "string"},
            statement={"type": "string", "description": "The full text, literals included."},
            parameters={"type": "array", "items": {"type": ["string", "null"]}},
            fingerprint={"type": "string"},
            grant_key={"type": "string"},
            rule={"type": "string"},
            policy_reason={"type": "string"},
            reason={"type": "string", "description": "The requester's own reason."},
            approver_groups={**strings, "description": "Empty: anyone but the requester."},
            min_approvals={"type": "integer"},
            approvals={**strings, "description": "Who has approved so far."},
            session_id={"type": "string"},
            created_at=time,
            expires_at=time,
            decided_at=maybe_time,
            grant_expires_at=maybe_time,
            executed_at=maybe_time,
            state_reason={"type": "string"},
            votes={"type": "array", "items": {"$ref": "#/components/schemas/Vote"}},
        ),
        "ApprovalList": _object(
            approvals={"type": "array", "items": {"$ref": "#/components/schemas/ApprovalRequest"}}
        ),
        "VoteBody": {
            "type": "object",
            "properties": {"comment": {"type": "string", "maxLength": MAX_COMMENT_LENGTH}},
            "additionalProperties": False,
        },
        "Login": {
            **_object(
                user={"type": "string", "minLength": 1, "maxLength": MAX_NAME_LENGTH},
                password={"type": "string", "minLength": 1, "maxLength": MAX_PASSWORD_LENGTH},
            ),
            "additionalProperties": False,
        },
        "LoginResult": _object(
            token={"type": "string", "description": "Send as `Authorization: Bearer <token>`."},
            token_id={"type": "string"},
            user={"type": "string"},
            expires_at=maybe_time,
        ),
        "LogoutResult": _object(revoked={"type": "boolean"}),
        "WhoAmI": _object(name={"type": "string"}, groups=strings),
        "Error": _object(
            error={"type": "string", "description": "A stable code, e.g. already_voted."},
            message={"type": "string", "description": "For people."},
        ),
    }


_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
_STATUS_TEXT = {
    "400": "The request is malformed.",
    "401": "No valid bearer token (or, for login, wrong user name or password).",
    "403": "The caller may not vote on this request.",
    "404": "There is no such request.",
    "409": "The request is closed, or the caller has already voted.",
    "413": "The body is too large.",
    "429": "Too many failed logins; try again later.",
    "503": "The approval state store is unavailable.",
}


def _ok(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _errors(*statuses: str) -> dict[str, Any]:
    return {status: _ok(_STATUS_TEXT[status], "Error") for status in statuses}


def _object(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties)}

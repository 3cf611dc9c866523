"""The approvals JSON API of the admin app: login, logout, whoami, list, show, approve and deny.

Every route but login needs a bearer token (see `auth.py`); votes go through `ApprovalService`,
whose rules decide who may vote, and an `ApprovalError` becomes its HTTP status with a JSON body
`{"error": ..., "message": ...}`. Responses never carry secrets: login returns its new token once,
and token digests are never returned at all. Logins (whatever their outcome) and logouts are
handed to the admin recorder (`records.py`), never with the password; votes are not, because the
approval service already records them as approval events. This module owns the routes, the
parsing of request bodies and parameters (shared with `sessions_api.py`), and the JSON form of a
request; it mounts the HTML page that notification links open (`approval_page.py`) but does not
render it, and `openapi.py` describes its routes.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bastion.admin.approval_page import serve_page
from bastion.admin.auth import ApiAuthenticator, LoginFailed, LoginThrottled
from bastion.admin.records import RecordAdmin
from bastion.approvals.errors import ApprovalError, RequestNotFound, StateStoreError
from bastion.approvals.model import ApprovalRequest, ApprovalState, Approver, Verdict
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


def approval_routes(
    service: ApprovalService, auth: ApiAuthenticator, record: RecordAdmin | None = None
) -> list[BaseRoute]:
    """The routes this module serves, for `build_admin_app` to mount; `record` hears of logins
    and logouts."""
    api = _ApprovalsApi(service, auth, record)
    return [
        Route("/v1/login", api.login, methods=["POST"]),
        Route("/v1/logout", api.logout, methods=["POST"]),
        Route("/v1/whoami", api.whoami, methods=["GET"]),
        Route("/v1/approvals", api.list_requests, methods=["GET"]),
        Route("/v1/approvals/{id:int}", api.show_request, methods=["GET"]),
        Route("/v1/approvals/{id:int}/approve", api.approve, methods=["POST"]),
        Route("/v1/approvals/{id:int}/deny", api.deny, methods=["POST"]),
        Route("/approvals/{id:int}", serve_page, methods=["GET"]),
    ]


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
    def __init__(
        self, service: ApprovalService, auth: ApiAuthenticator, record: RecordAdmin | None
    ) -> None:
        self._service = service
        self._auth = auth
        self._record = record

    async def login(self, request: Request) -> Response:
        try:
            body = await json_body(request, required=True)
            user = string_field(body, "user", MAX_NAME_LENGTH, required=True)
            password = string_field(body, "password", MAX_PASSWORD_LENGTH, required=True)
            source = request.client.host if request.client is not None else "unknown"
            try:
                token, record = await self._auth.login(user, password, source_address=source)
            except LoginFailed:
                self._note("login", user=user, outcome="failed", source_address=source)
                raise
            except LoginThrottled:
                self._note("login", user=user, outcome="throttled", source_address=source)
                raise
        except ApprovalError as exc:
            return error_response(exc)
        self._note("login", user=record.user, outcome="ok", source_address=source)
        return json_response(
            {
                "token": token,
                "token_id": record.id,
                "user": record.user,
                "expires_at": _iso(record.expires_at),
            }
        )

    async def logout(self, request: Request) -> Response:
        try:
            header = request.headers.get("authorization")
            # Who is logging out, for the record; None once the user has been removed.
            approver = await self._auth.authenticate(header) if self._record else None
            if not await self._auth.logout(header):
                raise Unauthorized("no live admin API token was presented")
        except ApprovalError as exc:
            return error_response(exc)
        source = request.client.host if request.client is not None else "unknown"
        self._note("logout", user=approver.name if approver else "", source_address=source)
        return json_response({"revoked": True})

    async def whoami(self, request: Request) -> Response:
        try:
            approver = await self._approver(request)
        except ApprovalError as exc:
            return error_response(exc)
        return json_response({"name": approver.name, "groups": list(approver.groups)})

    async def list_requests(self, request: Request) -> Response:
        try:
            await self._approver(request)
            states = _states(request.query_params.get("state", ApprovalState.PENDING.value))
            limit = _limit(request.query_params.get("limit"))
            found = await self._service.list(states, limit)
        except ApprovalError as exc:
            return error_response(exc)
        return json_response({"approvals": [request_document(r) for r in found]})

    async def show_request(self, request: Request) -> Response:
        try:
            await self._approver(request)
            request_id = _request_id(request)
            found = await self._service.get(request_id)
            if found is None:
                raise RequestNotFound(f"there is no approval request {request_id}")
        except ApprovalError as exc:
            return error_response(exc)
        return json_response(request_document(found))

    async def approve(self, request: Request) -> Response:
        return await self._vote(request, Verdict.APPROVE)

    async def deny(self, request: Request) -> Response:
        return await self._vote(request, Verdict.DENY)

    async def _vote(self, request: Request, verdict: Verdict) -> Response:
        try:
            approver = await self._approver(request)
            request_id = _request_id(request)
            body = await json_body(request, required=False)
            comment = string_field(body, "comment", MAX_COMMENT_LENGTH, required=False)
            decided = await self._service.vote(request_id, approver, verdict, comment)
        except ApprovalError as exc:
            return error_response(exc)
        return json_response(request_document(decided))

    async def _approver(self, request: Request) -> Approver:
        return await require_approver(self._auth, request)

    def _note(self, action: str, **payload: object) -> None:
        if self._record is not None:
            self._record(action, payload)


async def require_approver(auth: ApiAuthenticator, request: Request) -> Approver:
    """The person the request's bearer token proves; Unauthorized when there is none."""
    approver = await auth.authenticate(request.headers.get("authorization"))
    if approver is None:
        raise Unauthorized(
            "a valid bearer token is required (POST /v1/login, or `bastion login USER`)"
        )
    return approver


# Request parsing.


async def json_body(request: Request, *, required: bool) -> dict[str, Any]:
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


def string_field(body: dict[str, Any], key: str, max_length: int, *, required: bool) -> str:
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


def json_response(document: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(document, status_code=status, headers=_NO_STORE)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()

"""The sessions JSON API of the admin app: list the live client sessions, show one, end one.

Every route needs a bearer token (see `auth.py`) of someone in one of the operator groups
(`listeners.admin.operator_groups`); anyone else gets 403, naming those groups. Sessions are
read and ended through `SessionSource`, which the composition root fills with the gateway's
session registry: this module never touches sessions or the wire itself. Ending a session is
handed to the admin recorder (`records.py`) with who did it and why. Errors reuse the approvals
API's JSON shape (`error_response`); `openapi.py` describes these routes.
"""

from __future__ import annotations

import builtins
import time
import unicodedata
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bastion.admin.approvals_api import (
    BadRequest,
    error_response,
    json_body,
    json_response,
    require_approver,
    string_field,
)
from bastion.admin.auth import ApiAuthenticator
from bastion.admin.records import RecordAdmin
from bastion.approvals.errors import ApprovalError
from bastion.approvals.model import Approver
from bastion.pipeline.events import SessionSummary

MAX_REASON_LENGTH = 200
MAX_SESSION_ID_LENGTH = 64  # ids are far shorter; longer ones cannot name a session
ACTION_TERMINATED = "session_terminated"


class SessionSource(Protocol):
    """The live sessions of this instance (the gateway's session registry)."""

    def list(self) -> builtins.list[SessionSummary]:
        """Every session in relay phase, oldest first."""
        ...

    def terminate(self, session_id: str, reason: str) -> SessionSummary | None:
        """End the session; its summary just before, or None when there is no such session."""
        ...


class NotAnOperator(ApprovalError):
    status = 403


class SessionNotFound(ApprovalError):
    status = 404


def session_routes(
    sessions: SessionSource,
    auth: ApiAuthenticator,
    operator_groups: Sequence[str],
    record: RecordAdmin | None = None,
    *,
    clock: Callable[[], float] = time.time,
) -> list[BaseRoute]:
    """The routes this module serves, for `build_admin_app` to mount."""
    api = _SessionsApi(sessions, auth, tuple(operator_groups), record, clock)
    return [
        Route("/v1/sessions", api.list_sessions, methods=["GET"]),
        Route("/v1/sessions/{id}", api.show_session, methods=["GET"]),
        Route("/v1/sessions/{id}/terminate", api.terminate, methods=["POST"]),
    ]


def session_document(summary: SessionSummary, now: float) -> dict[str, Any]:
    """The JSON form of a session: every field, the start as ISO 8601 and its age in seconds."""
    return {
        "session_id": summary.session_id,
        "user": summary.user,
        "groups": list(summary.groups),
        "identity_kind": summary.identity_kind,
        "source_ip": summary.source_ip,
        "source_port": summary.source_port,
        "target": summary.target,
        "upstream_role": summary.upstream_role,
        "application_name": summary.application_name,
        "tls_version": summary.tls_version,
        "started_at": datetime.fromtimestamp(summary.started_at, UTC).isoformat(),
        "age_seconds": round(max(0.0, now - summary.started_at), 3),
        "statements": summary.statements,
        "transaction": summary.transaction,
        "waiting": summary.waiting,
    }


class _SessionsApi:
    def __init__(
        self,
        sessions: SessionSource,
        auth: ApiAuthenticator,
        operator_groups: tuple[str, ...],
        record: RecordAdmin | None,
        clock: Callable[[], float],
    ) -> None:
        self._sessions = sessions
        self._auth = auth
        self._operator_groups = operator_groups
        self._record = record
        self._clock = clock

    async def list_sessions(self, request: Request) -> Response:
        try:
            await self._operator(request)
        except ApprovalError as exc:
            return error_response(exc)
        now = self._clock()
        found = self._sessions.list()
        return json_response({"sessions": [session_document(s, now) for s in found]})

    async def show_session(self, request: Request) -> Response:
        try:
            await self._operator(request)
            summary = self._find(_session_id(request))
        except ApprovalError as exc:
            return error_response(exc)
        return json_response(session_document(summary, self._clock()))

    async def terminate(self, request: Request) -> Response:
        try:
            operator = await self._operator(request)
            session_id = _session_id(request)
            body = await json_body(request, required=True)
            reason = _reason(body)
            summary = self._sessions.terminate(session_id, reason)
            if summary is None:
                raise SessionNotFound(f"there is no session {session_id} on this instance")
        except ApprovalError as exc:
            return error_response(exc)
        if self._record is not None:
            self._record(
                ACTION_TERMINATED,
                {
                    "actor": operator.name,
                    "session_id": summary.session_id,
                    "user": summary.user,
                    "target": summary.target,
                    "reason": reason,
                },
            )
        return json_response(session_document(summary, self._clock()))

    async def _operator(self, request: Request) -> Approver:
        approver = await require_approver(self._auth, request)
        if not set(approver.groups) & set(self._operator_groups):
            groups = ", ".join(self._operator_groups) or "(none configured)"
            raise NotAnOperator(
                f"listing and ending sessions is for members of the operator groups ({groups}, "
                "listeners.admin.operator_groups)"
            )
        return approver

    def _find(self, session_id: str) -> SessionSummary:
        # The registry is small and lives on this event loop: a scan is cheaper than an index.
        for summary in self._sessions.list():
            if summary.session_id == session_id:
                return summary
        raise SessionNotFound(f"there is no session {session_id} on this instance")


def _session_id(request: Request) -> str:
    session_id = str(request.path_params["id"])
    if len(session_id) > MAX_SESSION_ID_LENGTH or not session_id.isprintable():
        raise SessionNotFound("there is no such session on this instance")
    return session_id


def _reason(body: dict[str, Any]) -> str:
    reason = string_field(body, "reason", MAX_REASON_LENGTH, required=True)
    if not reason.strip():
        raise BadRequest("`reason` must say why the session is ended")
    if any(unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") for char in reason):
        # The reason reaches the client's error message and the log: one plain line of text.
        raise BadRequest("`reason` must be one line of text, without control characters")
    return reason

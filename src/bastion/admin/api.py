"""The admin HTTP application (Starlette).

It answers health checks, for load balancers and orchestrators, serves Prometheus metrics at
/metrics, mounts the approvals endpoints (`approvals_api.py`, `approval_page.py`) when given an
approval service, the sessions endpoints (`sessions_api.py`) when given a session source, and
serves the description of whatever it mounts (`openapi.py`) at /openapi.json. It talks to
services through `StatusSource`, `ApprovalService` and `SessionSource`, never to wire internals
or sessions, and its answers never contain secrets. What people do through it (logins, logouts,
ended sessions) goes to the `record_admin` callback (`records.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bastion import __version__
from bastion.admin.approvals_api import approval_routes
from bastion.admin.auth import ApiAuthenticator
from bastion.admin.openapi import openapi_document
from bastion.admin.records import RecordAdmin
from bastion.admin.sessions_api import SessionSource, session_routes
from bastion.approvals.service import ApprovalService
from bastion.observability.metrics import CONTENT_TYPE_LATEST, BastionMetrics


class StatusSource(Protocol):
    @property
    def accepting(self) -> bool:
        """True while the proxy listeners accept connections."""
        ...


def build_admin_app(
    status: StatusSource,
    metrics: BastionMetrics | None = None,
    *,
    approvals: ApprovalService | None = None,
    auth: ApiAuthenticator | None = None,
    public_url: str | None = None,
    sessions: SessionSource | None = None,
    operator_groups: Sequence[str] = ("admin",),
    record_admin: RecordAdmin | None = None,
) -> Starlette:
    """The admin application; the approvals endpoints are mounted when `approvals` and `auth`
    are given (both or neither), the sessions endpoints when `sessions` is given too, for
    members of `operator_groups`. `public_url` is the base URL approvers use, for the OpenAPI
    document's `servers`. `record_admin` hears of logins, logouts and ended sessions."""
    if (approvals is None) != (auth is None):
        raise ValueError("the approvals endpoints need both an approval service and auth")
    if sessions is not None and auth is None:
        raise ValueError("the sessions endpoints need auth")

    async def healthz(request: Request) -> JSONResponse:
        # Liveness: the process and its event loop answer.
        return JSONResponse({"status": "ok", "version": __version__})

    async def readyz(request: Request) -> JSONResponse:
        # Readiness: the proxy accepts clients; a load balancer should send traffic here.
        if status.accepting:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready"}, status_code=503)

    async def prometheus(request: Request) -> Response:
        assert metrics is not None
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    async def openapi(request: Request) -> JSONResponse:
        return JSONResponse(document)

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    if metrics is not None:
        routes.append(Route("/metrics", prometheus, methods=["GET"]))
    if approvals is not None and auth is not None:
        routes.extend(approval_routes(approvals, auth, record_admin))
    if sessions is not None and auth is not None:
        routes.extend(session_routes(sessions, auth, operator_groups, record_admin))
    document = openapi_document(
        with_metrics=metrics is not None,
        with_approvals=approvals is not None,
        with_sessions=sessions is not None,
        public_url=public_url,
    )
    return Starlette(routes=routes)

"""The admin HTTP application (Starlette).

It answers health checks, for load balancers and orchestrators, and serves Prometheus metrics
at /metrics; authenticated endpoints (sessions, approvals, audit) build on it. It talks to
services through `StatusSource`, never to wire internals, and its answers never contain
secrets.
"""

from __future__ import annotations

from typing import Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bastion import __version__
from bastion.observability.metrics import CONTENT_TYPE_LATEST, BastionMetrics


class StatusSource(Protocol):
    @property
    def accepting(self) -> bool:
        """True while the proxy listeners accept connections."""
        ...


def build_admin_app(status: StatusSource, metrics: BastionMetrics | None = None) -> Starlette:
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

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
    if metrics is not None:
        routes.append(Route("/metrics", prometheus, methods=["GET"]))
    return Starlette(routes=routes)

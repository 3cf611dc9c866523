"""The admin HTTP application (Starlette).

Today it answers health checks, for load balancers and orchestrators; authenticated endpoints
(sessions, approvals, audit) build on it. It talks to services through `StatusSource`, never to
wire internals, and its answers never contain secrets.
"""

from __future__ import annotations

from typing import Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bastion import __version__


class StatusSource(Protocol):
    @property
    def accepting(self) -> bool:
        """True while the proxy listeners accept connections."""
        ...


def build_admin_app(status: StatusSource) -> Starlette:
    async def healthz(request: Request) -> JSONResponse:
        # Liveness: the process and its event loop answer.
        return JSONResponse({"status": "ok", "version": __version__})

    async def readyz(request: Request) -> JSONResponse:
        # Readiness: the proxy accepts clients; a load balancer should send traffic here.
        if status.accepting:
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "not ready"}, status_code=503)

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ]
    )

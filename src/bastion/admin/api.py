"""The admin HTTP application (Starlette).

It answers health checks, for load balancers and orchestrators, serves Prometheus metrics at
/metrics, mounts the approvals endpoints (`approvals_api.py`) when given an approval service,
and describes whatever it mounts at /openapi.json. It talks to services through `StatusSource`
and `ApprovalService`, never to wire internals, and its answers never contain secrets.
"""

from __future__ import annotations

from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bastion import __version__
from bastion.admin.approvals_api import approval_routes, openapi_paths, openapi_schemas
from bastion.admin.auth import ApiAuthenticator
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
) -> Starlette:
    """The admin application; the approvals endpoints are mounted when `approvals` and `auth`
    are given (both or neither). `public_url` is the base URL approvers use, for the OpenAPI
    document's `servers`."""
    if (approvals is None) != (auth is None):
        raise ValueError("the approvals endpoints need both an approval service and auth")

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
        routes.extend(approval_routes(approvals, auth))
    document = openapi_document(
        with_metrics=metrics is not None,
        with_approvals=approvals is not None,
        public_url=public_url,
    )
    return Starlette(routes=routes)


def openapi_document(
    *, with_metrics: bool, with_approvals: bool, public_url: str | None = None
) -> dict[str, Any]:
    """The OpenAPI 3.1 description of an admin app with these parts mounted."""
    paths: dict[str, Any] = {
        "/healthz": _plain_get(
            "Liveness: the process answers", "healthz", "Health", "Always, while alive."
        ),
        "/readyz": _plain_get(
            "Readiness: the proxy accepts clients",
            "readyz",
            "Health",
            "Ready; 503 with the same shape when not.",
            also={"503": _json_content("Not ready.", "Health")},
        ),
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "tags": ["service"],
                "security": [],
                "responses": {
                    "200": {
                        "description": "The OpenAPI 3.1 document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }
    if with_metrics:
        paths["/metrics"] = {
            "get": {
                "summary": "Prometheus metrics",
                "operationId": "metrics",
                "tags": ["service"],
                "security": [],
                "responses": {
                    "200": {
                        "description": "The Prometheus text exposition format.",
                        "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                    }
                },
            }
        }
    schemas: dict[str, Any] = {
        "Health": {
            "type": "object",
            "properties": {"status": {"type": "string"}, "version": {"type": "string"}},
            "required": ["status"],
        }
    }
    if with_approvals:
        paths.update(openapi_paths())
        schemas.update(openapi_schemas())
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Bastion admin API",
            "version": __version__,
            "description": "Health, metrics and approvals of a Bastion instance. Endpoints that "
            "need authentication take `Authorization: Bearer <token>`: an admin API token (from "
            "POST /v1/login or `bastion tokens create`) or a JWT from a configured OIDC issuer.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An admin API token (bst_...) or an OIDC JWT.",
                }
            },
        },
    }
    if public_url:
        document["servers"] = [{"url": public_url.rstrip("/")}]
    return document


def _json_content(description: str, schema: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
    }


def _plain_get(
    summary: str,
    operation_id: str,
    schema: str,
    description: str,
    also: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "operationId": operation_id,
            "tags": ["service"],
            "security": [],
            "responses": {"200": _json_content(description, schema), **(also or {})},
        }
    }

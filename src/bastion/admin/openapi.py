"""The OpenAPI 3.1 document the admin app serves at /openapi.json.

It owns the description of every admin route: the service routes of `api.py`, the approvals
routes of `approvals_api.py` and `approval_page.py`, and the sessions routes of
`sessions_api.py`, with the schemas of their bodies. It only
describes; limits it mentions come from the modules that enforce them, so the two cannot drift.
"""

from __future__ import annotations

from typing import Any

from bastion import __version__
from bastion.admin.approvals_api import (
    DEFAULT_LIST_LIMIT,
    MAX_COMMENT_LENGTH,
    MAX_LIST_LIMIT,
    MAX_NAME_LENGTH,
)
from bastion.admin.sessions_api import MAX_REASON_LENGTH
from bastion.approvals.model import ApprovalState, Verdict
from bastion.identity.directory import MAX_PASSWORD_LENGTH
from bastion.observability.metrics import CONTENT_TYPE_LATEST


def openapi_document(
    *,
    with_metrics: bool,
    with_approvals: bool,
    with_sessions: bool = False,
    public_url: str | None = None,
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
            also={"503": _ok("Not ready.", "Health")},
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
        paths.update(_approvals_paths())
        schemas.update(_approvals_schemas())
    if with_sessions:
        paths.update(_sessions_paths())
        schemas.update(_sessions_schemas())
        schemas.setdefault("Error", _approvals_schemas()["Error"])
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Bastion admin API",
            "version": __version__,
            "description": "Health, metrics, approvals and client sessions of a Bastion "
            "instance. Endpoints that "
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


def _approvals_paths() -> dict[str, Any]:
    """The routes of `approvals_api.py` and `approval_page.py`."""
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


def _sessions_paths() -> dict[str, Any]:
    """The routes of `sessions_api.py`."""
    session_id = {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": "The session's id, as listed.",
    }
    not_operator = {"403": _ok("The caller is in none of the operator groups.", "Error")}
    no_session = {"404": _ok("There is no such session on this instance.", "Error")}
    return {
        "/v1/sessions": {
            "get": {
                "summary": "List the client sessions of this instance, oldest first",
                "operationId": "listSessions",
                "tags": ["sessions"],
                "security": _BEARER,
                "responses": {
                    "200": _ok("The sessions.", "SessionList"),
                    **_errors("401", "503"),
                    **not_operator,
                },
            }
        },
        "/v1/sessions/{id}": {
            "get": {
                "summary": "One client session",
                "operationId": "getSession",
                "tags": ["sessions"],
                "security": _BEARER,
                "parameters": [session_id],
                "responses": {
                    "200": _ok("The session.", "Session"),
                    **_errors("401", "503"),
                    **not_operator,
                    **no_session,
                },
            }
        },
        "/v1/sessions/{id}/terminate": {
            "post": {
                "summary": "End a client session",
                "description": "The client gets a FATAL error 57P01 (admin_shutdown) naming the "
                "reason, its upstream connection is closed (an open transaction is rolled back) "
                "and the action is recorded with the caller's name.",
                "operationId": "terminateSession",
                "tags": ["sessions"],
                "security": _BEARER,
                "parameters": [session_id],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/TerminateBody"}
                        }
                    },
                },
                "responses": {
                    "200": _ok("The session as it was just before it ended.", "Session"),
                    **_errors("400", "401", "413", "503"),
                    **not_operator,
                    **no_session,
                },
            }
        },
    }


def _sessions_schemas() -> dict[str, Any]:
    """The bodies the sessions routes take and return."""
    return {
        "Session": _object(
            session_id={"type": "string"},
            user={"type": "string"},
            groups={"type": "array", "items": {"type": "string"}},
            identity_kind={"type": "string"},
            source_ip={"type": "string"},
            source_port={"type": "integer"},
            target={"type": "string"},
            upstream_role={"type": "string"},
            application_name={"type": "string"},
            tls_version={"type": ["string", "null"]},
            started_at={"type": "string", "format": "date-time"},
            age_seconds={"type": "number"},
            statements={"type": "integer", "description": "Statements completed so far."},
            transaction={
                "type": "string",
                "enum": ["idle", "in transaction", "failed transaction"],
            },
            waiting={
                "type": "string",
                "description": "Empty, or what the session waits for: `approval <id>`, "
                "`audit record` or `audit durability`.",
            },
        ),
        "SessionList": _object(
            sessions={"type": "array", "items": {"$ref": "#/components/schemas/Session"}}
        ),
        "TerminateBody": {
            **_object(
                reason={
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_REASON_LENGTH,
                    "description": "Why; the client's error message and the record show it.",
                }
            ),
            "additionalProperties": False,
        },
    }


def _approvals_schemas() -> dict[str, Any]:
    """The bodies those routes take and return."""
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
            "responses": {"200": _ok(description, schema), **(also or {})},
        }
    }

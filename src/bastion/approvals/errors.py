"""Why an approval action was refused; each maps to an HTTP status in the admin API."""

from __future__ import annotations


class ApprovalError(Exception):
    """Base class. `status` is the HTTP status the admin API answers with."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RequestNotFound(ApprovalError):
    status = 404


class RequestClosed(ApprovalError):
    """The request is no longer pending (decided, expired, withdrawn or executed)."""

    status = 409


class SelfApproval(ApprovalError):
    """The requester tried to approve (or deny) their own request."""

    status = 403


class NotAnApprover(ApprovalError):
    """The person is in none of the request's approver groups."""

    status = 403


class AlreadyVoted(ApprovalError):
    status = 409


class StateStoreError(ApprovalError):
    """The state store cannot be reached or refused the operation."""

    status = 503

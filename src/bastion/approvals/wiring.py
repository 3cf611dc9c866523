"""Building the approval service from configuration, and recording what happens to requests.

`open_state_store` picks the store (a SQLite file in the data dir by default, PostgreSQL when
several instances share state). `ApprovalRecorder` is the service's listener that turns every
request event and every notification delivery into a JSON log line, an audit record (when the
record is on) and metrics; a notification that failed never approves anything, but it is
visible in all three.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bastion.approvals.model import ApprovalRequest
from bastion.approvals.notify import Delivery, Notifier
from bastion.approvals.postgres_store import PostgresApprovalStore
from bastion.approvals.sqlite_store import SQLiteApprovalStore
from bastion.approvals.store import ApprovalStore

log = logging.getLogger("bastion.approvals")
audit_log = logging.getLogger("bastion.audit")

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
KIND_APPROVAL = "approval"
KIND_NOTIFICATION = "approval_notification"
# Events worth telling approvers about; `voted` alone (one of two approvals) is not.
NOTIFIED_EVENTS = frozenset({"requested", "approved", "denied", "expired", "withdrawn", "executed"})


def open_state_store(location: str, data_dir: Path, schema: str) -> ApprovalStore:
    if location.startswith(POSTGRES_SCHEMES):
        return PostgresApprovalStore(location, schema=schema)
    path = Path(location)
    return SQLiteApprovalStore(path if path.is_absolute() else data_dir / path)


def approval_payload(event: str, request: ApprovalRequest, actor: str) -> dict[str, Any]:
    """What the audit record keeps of a request event. The statement itself stays in the state
    store (found by request id); the record has its fingerprint, as statement records do."""
    payload: dict[str, Any] = {
        "event": event,
        "request_id": request.id,
        "actor": actor,
        "state": str(request.state),
        "user": request.requester,
        "target": request.target,
        "rule": request.rule,
        "fingerprint": request.fingerprint,
        "session_id": request.session_id,
        "approvals": list(request.approvals),
        "min_approvals": request.min_approvals,
    }
    if request.approver_groups:
        payload["approver_groups"] = list(request.approver_groups)
    denial = request.denial
    if event == "denied" and denial is not None and denial.comment:
        payload["comment"] = denial.comment
    if event == "voted" and request.votes:
        last = request.votes[-1]
        payload["verdict"] = str(last.verdict)
        if last.comment:
            payload["comment"] = last.comment
    if request.state_reason and event in ("withdrawn", "expired"):
        payload["reason"] = request.state_reason
    return payload


class ApprovalRecorder:
    """An ApprovalService listener: log line, audit record, metrics and notifications."""

    def __init__(
        self,
        *,
        submit: Callable[[str, dict[str, Any]], None] | None = None,
        count_event: Callable[[str], None] | None = None,
        count_delivery: Callable[[str, bool], None] | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self._submit = submit
        self._count_event = count_event
        self._count_delivery = count_delivery
        self.notifier = notifier

    def __call__(self, event: str, request: ApprovalRequest, actor: str) -> None:
        payload = approval_payload(event, request, actor)
        self._record(KIND_APPROVAL, payload)
        if self._count_event is not None:
            self._count_event(event)
        if self.notifier is not None and event in NOTIFIED_EVENTS:
            self.notifier.notify(event, request)

    def delivered(self, delivery: Delivery) -> None:
        """The notifier's on_delivery callback."""
        payload: dict[str, Any] = {
            "event": delivery.event,
            "request_id": delivery.request_id,
            "channel": delivery.channel,
            "outcome": "delivered" if delivery.ok else "failed",
            "attempts": delivery.attempts,
        }
        if delivery.error:
            payload["error"] = delivery.error
        self._record(KIND_NOTIFICATION, payload)
        if self._count_delivery is not None:
            self._count_delivery(delivery.channel, delivery.ok)

    def _record(self, kind: str, payload: dict[str, Any]) -> None:
        if audit_log.isEnabledFor(logging.INFO):
            audit_log.info(kind, extra={"fields": payload})
        if self._submit is not None:
            try:
                self._submit(kind, payload)
            except Exception as exc:
                log.error(
                    "audit record refused an approval event",
                    extra={"fields": {"kind": kind, "error": type(exc).__name__}},
                )

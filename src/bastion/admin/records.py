"""What operators and approvers do through the admin API, on the record.

`AdminRecorder` is the one `RecordAdmin` callback the admin routes are given: each action
(`session_terminated`, `login`, `logout`) becomes a JSON log line on `bastion.audit` (message
`admin`), an audit record of kind `admin` when the composition root hands it a `submit`
callback, and a count. Payloads never hold secrets; the routes leave passwords and tokens out.
Recording never raises into a request: a refused audit record is logged as an error and the
action it describes has already happened.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bastion.audit.record import KIND_ADMIN

log = logging.getLogger("bastion.admin")
audit_log = logging.getLogger("bastion.audit")

RecordAdmin = Callable[[str, dict[str, object]], None]
"""`record(action, payload)`: how the admin routes report what was done; it must not raise."""


class AdminRecorder:
    """A `RecordAdmin` callback: log line, audit record (`submit("admin", ...)`) and count."""

    def __init__(
        self,
        submit: Callable[[str, dict[str, object]], None] | None = None,
        *,
        count: Callable[[str], None] | None = None,
    ) -> None:
        self._submit = submit
        self._count = count

    def __call__(self, action: str, payload: dict[str, object]) -> None:
        fields: dict[str, object] = {"action": action, **payload}
        if audit_log.isEnabledFor(logging.INFO):
            audit_log.info(KIND_ADMIN, extra={"fields": fields})
        if self._count is not None:
            try:
                self._count(action)
            except Exception as exc:
                log.error(
                    "counting an admin action failed",
                    extra={"fields": {"action": action, "error": type(exc).__name__}},
                )
        if self._submit is not None:
            try:
                self._submit(KIND_ADMIN, fields)
            except Exception as exc:
                log.error(
                    "audit record refused an admin action",
                    extra={"fields": {"action": action, "error": type(exc).__name__}},
                )

"""JsonLogSink: one structured JSON log line per connection event and per statement.

Statement text is the normalized form (literals replaced by placeholders), so passwords in
`ALTER ROLE ... PASSWORD '...'` or customer values in a WHERE clause never reach the log.
"""

from __future__ import annotations

import logging
from typing import Any

from bastion.pipeline.events import ConnectionEvent, StatementEvent

AUDIT_LOGGER = "bastion.audit"


class JsonLogSink:
    """Writes events through the `bastion.audit` logger; the JSON formatter renders them."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger(AUDIT_LOGGER)

    def connection(self, event: ConnectionEvent) -> None:
        if self._logger.isEnabledFor(logging.INFO):
            self._logger.info("connection", extra={"fields": _fields(event)})

    def statement(self, event: StatementEvent) -> None:
        if self._logger.isEnabledFor(logging.INFO):
            self._logger.info("statement", extra={"fields": _fields(event)})


def _fields(event: ConnectionEvent | StatementEvent) -> dict[str, Any]:
    return {
        name: value
        for name in event.__slots__
        if (value := getattr(event, name)) is not None and value != ""
    }

"""JsonLogSink: one structured JSON log line per connection event and per statement.

Statement text is the normalized form (literals replaced by placeholders), so passwords in
`ALTER ROLE ... PASSWORD '...'` or customer values in a WHERE clause never reach the log.

With a LineWriter the sink renders the line itself and skips the logging machinery (this runs
once per statement); without one it goes through the `bastion.audit` logger.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from bastion.logs import LineWriter, utc_timestamp
from bastion.pipeline.events import ConnectionEvent, StatementEvent

AUDIT_LOGGER = "bastion.audit"


class JsonLogSink:
    """Writes events as JSON lines, directly to a LineWriter or through a logger."""

    def __init__(
        self, logger: logging.Logger | None = None, writer: LineWriter | None = None
    ) -> None:
        self._logger = logger or logging.getLogger(AUDIT_LOGGER)
        self._writer = writer

    @property
    def records_statements(self) -> bool:
        """False when statement events would be thrown away: callers can skip building them."""
        return self._logger.isEnabledFor(logging.INFO)

    def connection(self, event: ConnectionEvent) -> None:
        self._emit("connection", event)

    def statement(self, event: StatementEvent) -> None:
        self._emit("statement", event)

    def _emit(self, message: str, event: ConnectionEvent | StatementEvent) -> None:
        if not self._logger.isEnabledFor(logging.INFO):
            return
        if self._writer is None:
            self._logger.info(message, extra={"fields": _fields(event)})
            return
        line = {
            "ts": _timestamp(),
            "level": "info",
            "logger": self._logger.name,
            "msg": message,
            **_fields(event),
        }
        # Connection events are rare and readers correlate them with what the client saw:
        # write them at once. Statement lines wait for the end of the loop turn.
        self._writer.write_line(_ENCODER.encode(line), now=message == "connection")


# One encoder, built once: json.dumps with options builds a new one on every call.
_ENCODER = json.JSONEncoder(default=str, ensure_ascii=False)
_second: int = -1
_second_text = ""


def _timestamp() -> str:
    # strftime is the costly part of a timestamp; it changes once a second.
    global _second, _second_text
    now = time.time()
    second = int(now)
    if second != _second:
        _second, _second_text = second, utc_timestamp(second)[:-5]
    return f"{_second_text}.{int((now - second) * 1000):03d}Z"


def _fields(event: ConnectionEvent | StatementEvent) -> dict[str, Any]:
    return {
        name: value
        for name in event.__slots__
        if (value := getattr(event, name)) is not None and value != "" and value != ()
    }

"""Process-wide logging set-up: JSON lines (default) or plain text, on stderr.

Records may carry structured data in `extra={"fields": {...}}`; the JSON formatter merges it into
the line. Nothing here knows about secrets: callers must never put them into a record.

Lines are written through one `LineWriter`, which coalesces everything logged during one turn
of the event loop into a single write: under load, hundreds of statement lines cost one system
call instead of one each. Outside a running loop every line is written at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import Any, TextIO


def utc_timestamp(created: float) -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
        + f".{int((created % 1) * 1000):03d}Z"
    )


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": utc_timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            line["error_type"] = record.exc_info[0].__name__
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            base += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return base


class LineWriter:
    """Writes whole lines to a stream, coalesced per event-loop turn."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._pending: list[str] = []
        self._scheduled = False

    def write_line(self, line: str, *, now: bool = False) -> None:
        """Queue a line; `now` writes it (and anything queued before it) at once."""
        self._pending.append(line)
        if now:
            self.flush()
            return
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._scheduled = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        text = "\n".join(self._pending) + "\n"
        self._pending.clear()
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken log stream must not take the proxy down


class LineHandler(logging.Handler):
    """A logging handler that hands formatted records to a LineWriter.

    Records logged through `logging` are rare (startup, refusals, warnings) and are written at
    once, so they reach the log before any reply the client gets; only the audit sink's
    per-statement lines wait for the end of the loop turn."""

    def __init__(self, writer: LineWriter) -> None:
        super().__init__()
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.writer.write_line(self.format(record), now=True)
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        self.writer.flush()


_WRITER: LineWriter | None = None


def log_writer() -> LineWriter | None:
    """The writer configure_logging set up, for sinks that write JSON lines themselves."""
    return _WRITER


def configure_logging(level: str = "info", fmt: str = "json") -> LineWriter:
    global _WRITER
    writer = LineWriter(sys.stderr)
    handler = LineHandler(writer)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("bastion")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    _WRITER = writer if fmt == "json" else None
    return writer

"""LineWriter coalesces lines per event-loop turn; JsonLogSink renders the same lines either way."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from bastion.audit.log_sink import JsonLogSink
from bastion.logs import JsonFormatter, LineHandler, LineWriter
from bastion.pipeline.events import StatementEvent


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


EVENT = StatementEvent(
    session_id="s",
    user="alice",
    target="shop",
    protocol="simple",
    kind="select",
    statement="SELECT $1",
    fingerprint="f",
    decision="allow",
    rule="r",
    outcome="ok",
)


def test_outside_a_loop_each_line_is_written_at_once() -> None:
    stream = CountingStream()
    writer = LineWriter(stream)
    writer.write_line("a")
    writer.write_line("b")
    assert stream.getvalue() == "a\nb\n"
    assert stream.writes == 2


def test_inside_a_loop_one_turn_is_one_write() -> None:
    stream = CountingStream()
    writer = LineWriter(stream)

    async def burst() -> None:
        for i in range(100):
            writer.write_line(str(i))
        assert stream.writes == 0  # nothing written yet: the loop has not turned
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(burst())
    assert stream.writes == 1
    assert stream.getvalue().splitlines() == [str(i) for i in range(100)]


def test_the_sink_writes_the_same_line_with_or_without_the_writer() -> None:
    logger = logging.getLogger("bastion.audit.test")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    stream = CountingStream()
    handler = LineHandler(LineWriter(stream))
    handler.setFormatter(JsonFormatter())
    logger.handlers[:] = [handler]
    JsonLogSink(logger).statement(EVENT)
    direct = CountingStream()
    JsonLogSink(logger, writer=LineWriter(direct)).statement(EVENT)
    via_logging, fast = json.loads(stream.getvalue()), json.loads(direct.getvalue())
    for line in (via_logging, fast):
        line.pop("ts")
    assert via_logging == fast
    assert fast["msg"] == "statement" and fast["user"] == "alice"


def test_lines_logged_through_logging_are_written_at_once() -> None:
    stream = CountingStream()
    writer = LineWriter(stream)
    handler = LineHandler(writer)
    handler.setFormatter(JsonFormatter())
    record = logging.LogRecord("bastion.x", logging.WARNING, __file__, 1, "refused", None, None)

    async def inside_the_loop() -> None:
        writer.write_line("queued statement line")
        handler.emit(record)
        assert stream.writes == 1  # both lines, in order, before the loop turns
        await asyncio.sleep(0)

    asyncio.run(inside_the_loop())
    lines = stream.getvalue().splitlines()
    assert lines[0] == "queued statement line"
    assert json.loads(lines[1])["msg"] == "refused"

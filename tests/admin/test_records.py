"""AdminRecorder: an admin action becomes a log line, an audit record and a count, and a
failing record never reaches the request that reported it."""

from __future__ import annotations

import json
import logging

import pytest

from bastion.admin.records import AdminRecorder
from bastion.logs import JsonFormatter

PAYLOAD: dict[str, object] = {
    "actor": "olga",
    "session_id": "a1b2c3d4e5f6",
    "user": "carol",
    "target": "shop",
    "reason": "runaway report",
}


def test_an_action_is_logged_submitted_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    submitted: list[tuple[str, dict[str, object]]] = []
    counted: list[str] = []
    recorder = AdminRecorder(
        lambda kind, payload: submitted.append((kind, payload)), count=counted.append
    )
    with caplog.at_level(logging.INFO, logger="bastion.audit"):
        recorder("session_terminated", PAYLOAD)
    expected = {"action": "session_terminated", **PAYLOAD}
    assert submitted == [("admin", expected)]
    assert counted == ["session_terminated"]
    (record,) = [r for r in caplog.records if r.name == "bastion.audit"]
    assert record.getMessage() == "admin"
    line = json.loads(JsonFormatter().format(record))
    assert line["logger"] == "bastion.audit" and line["msg"] == "admin"
    assert {key: line[key] for key in expected} == expected


def test_without_submit_it_only_logs(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="bastion.audit"):
        AdminRecorder(None)("logout", {"user": "bob", "source_address": "127.0.0.1"})
    assert [r.getMessage() for r in caplog.records if r.name == "bastion.audit"] == ["admin"]


def test_a_refused_record_is_logged_and_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    def refuse(kind: str, payload: dict[str, object]) -> None:
        raise RuntimeError("the audit record refused the event")

    def broken_count(action: str) -> None:
        raise ValueError(action)

    recorder = AdminRecorder(refuse, count=broken_count)
    with caplog.at_level(logging.INFO):
        recorder("login", {"user": "bob", "outcome": "ok", "source_address": "127.0.0.1"})
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "counting an admin action failed",
        "audit record refused an admin action",
    ]
    assert errors[1].fields == {"action": "login", "error": "RuntimeError"}  # type: ignore[attr-defined]

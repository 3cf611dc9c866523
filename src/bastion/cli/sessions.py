"""`bastion sessions`: list the client sessions of a running Bastion, and end one.

Talks to the admin API through `http.py` (the admin URL, the token, failures); the caller must
be in one of `listeners.admin.operator_groups`. This module only parses arguments and prints.
Whatever a client chose (user name, application name) is printed through `visible`, control
characters escaped, so it cannot rewrite the operator's terminal. Exit status: 0 on success, 1
when the API refuses or cannot be reached, 2 on usage errors.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from bastion.cli.common import EXIT_OK, show_usage
from bastion.cli.http import (
    add_client_options,
    call,
    print_json,
    print_table,
    reporting,
    visible,
)

APP_COLUMN = 24
MAX_REASON_LENGTH = 200


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "sessions",
        help="list the client sessions of a running Bastion, and end one",
        description="List and end client sessions through a running Bastion's admin API. "
        "Needs membership in one of listeners.admin.operator_groups; log in first with "
        "`bastion login USER`.",
    )
    parser.set_defaults(func=show_usage(parser))
    commands = parser.add_subparsers(dest="sessions_command", metavar="SUBCOMMAND")

    listing = commands.add_parser("list", help="list the sessions open now, oldest first")
    listing.add_argument("--json", action="store_true", help="print the API's JSON")
    add_client_options(listing)
    listing.set_defaults(func=reporting(run_list, "sessions list"))

    kill = commands.add_parser(
        "kill",
        help="end a session (the client gets error 57P01 with the reason)",
        description="End a client session: the client gets a FATAL error 57P01 naming the "
        "reason, its upstream connection is closed (an open transaction is rolled back), "
        "and the action is recorded with your name.",
    )
    kill.add_argument("id", metavar="ID", help="the session's id, as `sessions list` shows it")
    kill.add_argument(
        "--reason",
        required=True,
        type=_reason,
        help=f"why, 1 to {MAX_REASON_LENGTH} characters; the client and the record see it",
    )
    add_client_options(kill)
    kill.set_defaults(func=reporting(run_kill, "sessions kill"))


# The commands.


def run_list(args: argparse.Namespace) -> int:
    """`bastion sessions list [--json]`."""
    found = call(args, "GET", "/v1/sessions")
    if args.json:
        print_json(found)
        return EXIT_OK
    sessions: list[dict[str, Any]] = found.get("sessions", [])
    if not sessions:
        print("no client sessions")
        return EXIT_OK
    header = (
        "ID",
        "USER",
        "KIND",
        "SOURCE",
        "TARGET",
        "APP",
        "STARTED",
        "AGE",
        "STMTS",
        "TRANSACTION",
        "WAITING",
    )
    print_table([header, *(_row(session) for session in sessions)])
    return EXIT_OK


def run_kill(args: argparse.Namespace) -> int:
    """`bastion sessions kill ID --reason TEXT`."""
    path = f"/v1/sessions/{_path_segment(args.id)}/terminate"
    ended = call(args, "POST", path, body={"reason": args.reason})
    print(
        f"ended session {visible(ended['session_id'])} of {visible(ended['user'])} "
        f"on {visible(ended['target'])} from {visible(ended['source_ip'])}"
    )
    return EXIT_OK


# Formatting.


def _row(session: dict[str, Any]) -> tuple[str, ...]:
    s = session
    app = visible(s["application_name"])
    if len(app) > APP_COLUMN:
        app = app[: APP_COLUMN - 3] + "..."
    return (
        visible(s["session_id"]),
        visible(s["user"]),
        visible(s["identity_kind"]),
        f"{visible(s['source_ip'])}:{s['source_port']}",
        visible(s["target"]),
        app or "-",
        _time(s["started_at"]),
        age(float(s["age_seconds"])),
        str(s["statements"]),
        visible(s["transaction"]),
        visible(s["waiting"]) or "-",
    )


def age(seconds: float) -> str:
    """A duration, the two largest units: 42s, 3m05s, 2h07m, 4d03h."""
    whole = int(max(0.0, seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _time(value: str) -> str:
    try:
        return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    except ValueError:
        return visible(value)


# Plumbing.


def _reason(value: str) -> str:
    if not value.strip() or len(value) > MAX_REASON_LENGTH:
        raise argparse.ArgumentTypeError(f"must be 1 to {MAX_REASON_LENGTH} characters")
    return value


def _path_segment(value: str) -> str:
    # Session ids are hex; anything else is sent escaped, for the server to answer 404.
    return quote(value, safe="")

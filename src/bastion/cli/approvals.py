"""`bastion approvals`: list, show, approve and deny held statements through the admin API.

Talks to a running Bastion through `http.py` (the admin URL, the token, failures) and only
parses arguments and prints. Everything a requester wrote (statement, parameters, reasons,
comments) is printed through `visible`, control and direction-changing characters escaped, so a
statement cannot rewrite the approver's terminal to look like another. Exit status: 0 on
success, 1 when the API refuses or cannot be reached, 2 on usage errors.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from bastion.cli.common import EXIT_OK, show_usage
from bastion.cli.http import (
    add_client_options,
    call,
    print_json,
    print_table,
    reporting,
    visible,
)

STATES = ("pending", "approved", "denied", "expired", "withdrawn", "executed")
STATEMENT_COLUMN = 60
MAX_LIMIT = 500
_PAST = {"approve": "approved", "deny": "denied"}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "approvals",
        help="list, show, approve and deny statements held for approval",
        description="Decide statements Bastion holds for approval, through its admin API. "
        "Log in first with `bastion login USER`.",
    )
    parser.set_defaults(func=show_usage(parser))
    commands = parser.add_subparsers(dest="approvals_command", metavar="SUBCOMMAND")

    listing = commands.add_parser("list", help="list requests (pending ones by default)")
    listing.add_argument(
        "--state",
        type=_state_filter,
        default="pending",
        help=f"all, or one or more of {', '.join(STATES)} separated by commas (pending)",
    )
    listing.add_argument(
        "--limit", type=_limit, default=50, help=f"at most this many, 1 to {MAX_LIMIT} (50)"
    )
    listing.add_argument("--json", action="store_true", help="print the API's JSON")
    add_client_options(listing)
    listing.set_defaults(func=reporting(run_list, "approvals list"))

    show = commands.add_parser("show", help="print one request in full, with its votes")
    show.add_argument("id", type=int, metavar="ID")
    show.add_argument("--json", action="store_true", help="print the API's JSON")
    add_client_options(show)
    show.set_defaults(func=reporting(run_show, "approvals show"))

    for verdict, help_text in (
        ("approve", "approve a pending request"),
        ("deny", "deny a pending request (one deny decides)"),
    ):
        vote = commands.add_parser(verdict, help=help_text)
        vote.add_argument("id", type=int, metavar="ID")
        vote.add_argument("--comment", default="", help="why; recorded with the vote")
        add_client_options(vote)
        vote.set_defaults(func=reporting(run_vote, f"approvals {verdict}"), verdict=verdict)


# The commands.


def run_list(args: argparse.Namespace) -> int:
    """`bastion approvals list [--state S] [--limit N] [--json]`."""
    found = call(
        args, "GET", "/v1/approvals", params={"state": args.state, "limit": str(args.limit)}
    )
    requests: list[dict[str, Any]] = found.get("approvals", [])
    if args.json:
        print_json(found)
        return EXIT_OK
    if not requests:
        print("no approval requests" if args.state == "all" else f"no {args.state} requests")
        return EXIT_OK
    rows = [("ID", "STATE", "REQUESTER", "TARGET", "RULE", "VOTES", "CREATED", "STATEMENT")]
    rows += [
        (
            str(r["id"]),
            r["state"],
            visible(r["requester"]),
            visible(r["target"]),
            visible(r["rule"]),
            f"{len(r['approvals'])}/{r['min_approvals']}",
            _time(r["created_at"]),
            _one_line(r["statement"], STATEMENT_COLUMN),
        )
        for r in requests
    ]
    print_table(rows)
    return EXIT_OK


def run_show(args: argparse.Namespace) -> int:
    """`bastion approvals show ID [--json]`."""
    request = call(args, "GET", f"/v1/approvals/{args.id}")
    if args.json:
        print_json(request)
    else:
        print(describe(request))
    return EXIT_OK


def run_vote(args: argparse.Namespace) -> int:
    """`bastion approvals approve|deny ID [--comment TEXT]`."""
    request = call(
        args, "POST", f"/v1/approvals/{args.id}/{args.verdict}", body={"comment": args.comment}
    )
    print(_outcome(args.verdict, request))
    return EXIT_OK


# Formatting.


def describe(request: dict[str, Any]) -> str:
    """A request in full, for people at a terminal."""
    r = request
    groups = f" ({', '.join(map(visible, r['requester_groups']))})" if r["requester_groups"] else ""
    approvers = ", ".join(map(visible, r["approver_groups"])) or "anyone but the requester"
    given = ", ".join(map(visible, r["approvals"])) or "none yet"
    fields = [
        ("requester", f"{visible(r['requester'])}{groups} from {visible(r['source_address'])}"),
        ("target", visible(r["target"])),
        ("rule", f"{visible(r['rule'])}: {visible(r['policy_reason'])}"),
        ("reason", visible(r["reason"]) or "(none given)"),
        ("approvers", approvers),
        ("approvals", f"{len(r['approvals'])} of {r['min_approvals']} needed (given: {given})"),
        ("created", _time(r["created_at"])),
        ("expires", _time(r["expires_at"])),
        ("decided", _time(r["decided_at"])),
        ("grant until", _time(r["grant_expires_at"])),
        ("executed", _time(r["executed_at"])),
        ("note", visible(r["state_reason"])),
    ]
    lines = [f"Approval request {r['id']}: {r['state'].upper()}"]
    lines += [f"  {name:<12} {value}" for name, value in fields if value]
    lines += ["", "Statement:", *_indented(visible(r["statement"], keep_newlines=True))]
    if r["parameters"]:
        lines += ["", "Parameters:"]
        lines += [
            f"  ${index} = {'NULL' if value is None else _quoted(value)}"
            for index, value in enumerate(r["parameters"], start=1)
        ]
    lines += ["", "Votes:"]
    if not r["votes"]:
        lines.append("  none yet")
    for vote in r["votes"]:
        comment = f": {visible(vote['comment'])}" if vote["comment"] else ""
        verdict = _PAST.get(vote["verdict"], vote["verdict"])
        lines.append(f"  {_time(vote['at'])}  {visible(vote['approver'])} {verdict}{comment}")
    return "\n".join(lines)


def _outcome(verdict: str, request: dict[str, Any]) -> str:
    state = request["state"]
    rid = request["id"]
    if verdict == "deny":
        return f"denied request {rid}"
    if state == "approved":
        return f"approved request {rid}: it is approved, and the statement may now run"
    approvals = len(request["approvals"])
    return (
        f"approved request {rid}: {approvals} of {request['min_approvals']} approvals so far, "
        f"still {state}"
    )


def _one_line(text: str, width: int) -> str:
    flat = " ".join(visible(text).split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def _quoted(value: str) -> str:
    return "'" + visible(value).replace("'", "''") + "'"


def _indented(text: str) -> list[str]:
    return [f"  {line}" for line in text.splitlines()] or ["  "]


def _time(value: str | None) -> str:
    if not value:
        return ""
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    except ValueError:
        return visible(value)


# Plumbing.


def _state_filter(value: str) -> str:
    parts = [part.strip() for part in value.split(",")]
    if value.strip() != "all" and not all(part in STATES for part in parts):
        raise argparse.ArgumentTypeError(f"not all or a list of {', '.join(STATES)}: {value!r}")
    return value.strip() if value.strip() == "all" else ",".join(parts)


def _limit(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"not a number from 1 to {MAX_LIMIT}: {value!r}")
    return int(value)

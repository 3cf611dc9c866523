"""`bastion users`: manage the password users kept in the data dir.

Subcommands: `add`, `list`, `remove` and `verifier`. Passwords are read from the terminal (asked
twice) or, when stdin is not a terminal, as one line from stdin; never from the command line,
where they would end up in shell history and process listings. Only SCRAM verifiers are
written or printed, never passwords.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable

from bastion.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    add_data_dir_option,
    resolve_data_dir,
    show_usage,
)
from bastion.datadir import DataDir
from bastion.errors import ConfigError
from bastion.identity.records import USER_NAME_RE, IdentityKind, UserRecord
from bastion.identity.scram import make_verifier
from bastion.identity.users_file import UsersFile

_Handler = Callable[[argparse.Namespace], int]


class PasswordError(Exception):
    """The password could not be read, or was refused (empty, or the two entries differ)."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "users",
        help="manage password users in the data dir",
        description="Add, list and remove the password users kept in the data dir.",
    )
    commands = parser.add_subparsers(dest="users_command", metavar="SUBCOMMAND")
    parser.set_defaults(func=show_usage(parser))

    add = commands.add_parser(
        "add",
        help="add a password user (the password is read from the terminal or stdin)",
        description="Add a password user. The password is asked twice on a terminal, or read "
        "as one line from stdin; only its SCRAM-SHA-256 verifier is stored.",
    )
    add.add_argument("name", metavar="NAME", help="login name clients send as their user")
    add.add_argument(
        "--group",
        dest="groups",
        action="append",
        default=[],
        metavar="G",
        help="group the user belongs to (repeat for several)",
    )
    add.add_argument(
        "--kind",
        choices=[kind.value for kind in IdentityKind],
        default=IdentityKind.HUMAN.value,
        help="what sort of principal this is (default: human)",
    )
    add.add_argument(
        "--replace",
        action="store_true",
        help="overwrite an existing user of the same name",
    )
    add_data_dir_option(add)
    add.set_defaults(func=_add)

    listing = commands.add_parser("list", help="list password users (never their verifiers)")
    add_data_dir_option(listing)
    listing.set_defaults(func=_list)

    remove = commands.add_parser("remove", help="remove a password user")
    remove.add_argument("name", metavar="NAME")
    add_data_dir_option(remove)
    remove.set_defaults(func=_remove)

    verifier = commands.add_parser(
        "verifier",
        help="print a SCRAM verifier for a password, for users written in the configuration",
        description="Read a password like `users add` does and print its SCRAM-SHA-256 verifier.",
    )
    verifier.set_defaults(func=_verifier)


def _data_dir(args: argparse.Namespace) -> DataDir:
    return DataDir(resolve_data_dir(args.data_dir))


def read_password() -> str:
    """Ask twice on a terminal; otherwise take one line of stdin. Empty passwords are refused."""
    if sys.stdin is not None and sys.stdin.isatty():
        try:
            first = getpass.getpass("Password: ")
            second = getpass.getpass("Password (again): ")
        except (EOFError, KeyboardInterrupt):
            raise PasswordError("no password entered") from None
        if first != second:
            raise PasswordError("the passwords do not match")
        password = first
    else:
        line = sys.stdin.readline() if sys.stdin is not None else ""
        password = line.removesuffix("\n").removesuffix("\r")
    if not password:
        raise PasswordError("empty passwords are not allowed")
    return password


def _fail(message: str) -> int:
    print(f"bastion users: {message}", file=sys.stderr)
    return EXIT_FAILURE


def _usage_error(message: str) -> int:
    print(f"bastion users: {message}", file=sys.stderr)
    return EXIT_USAGE


def _add(args: argparse.Namespace) -> int:
    name: str = args.name
    if not USER_NAME_RE.match(name):
        return _usage_error(
            f"invalid user name {name!r}: 1-63 letters, digits and _ . @ + -, "
            "starting with a letter, digit or _"
        )
    groups: list[str] = []
    for group in args.groups:
        if not group.strip():
            return _usage_error("group names must not be empty")
        if group not in groups:
            groups.append(group)
    kind = IdentityKind(args.kind)
    data_dir = _data_dir(args)
    users = UsersFile(data_dir.users_file)
    try:
        # Checked before asking for a password nobody would then use; add() checks again.
        if not args.replace and any(user.name == name for user in users.load()):
            return _fail(f"user {name!r} already exists in {users.path}; pass --replace")
        password = read_password()
        record = UserRecord(
            name=name, groups=tuple(groups), kind=kind, scram=make_verifier(password)
        )
        data_dir.ensure()
        users.add(record, replace=args.replace)
    except PasswordError as exc:
        return _fail(str(exc))
    except ConfigError as exc:
        return _fail(exc.message)
    print(f"added user {name} ({kind.value}, groups: {', '.join(groups) or 'none'})")
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    users_file = UsersFile(_data_dir(args).users_file)
    try:
        users = users_file.load()
    except ConfigError as exc:
        return _fail(exc.message)
    if not users:
        print(f"no users in {users_file.path}")
        return EXIT_OK
    rows = [("NAME", "KIND", "GROUPS")] + [
        (user.name, user.kind.value, ", ".join(user.groups) or "-") for user in users
    ]
    name_width = max(len(row[0]) for row in rows)
    kind_width = max(len(row[1]) for row in rows)
    for name, kind, groups in rows:
        print(f"{name:<{name_width}}  {kind:<{kind_width}}  {groups}".rstrip())
    return EXIT_OK


def _remove(args: argparse.Namespace) -> int:
    users_file = UsersFile(_data_dir(args).users_file)
    try:
        removed = users_file.remove(args.name)
    except ConfigError as exc:
        return _fail(exc.message)
    if not removed:
        return _fail(f"no user {args.name!r} in {users_file.path}")
    print(f"removed user {args.name}")
    return EXIT_OK


def _verifier(_args: argparse.Namespace) -> int:
    try:
        password = read_password()
    except PasswordError as exc:
        return _fail(str(exc))
    print(make_verifier(password))
    return EXIT_OK

"""`bastion tokens`: create, list and revoke admin API tokens directly in the state store.

For service accounts and automation, which should not log in with a password: a token is made
here, on a host that can open the state store, and handed to the robot. The store is the one
Bastion itself uses: `state.store` of `--config` (a SQLite file under the data dir, or a
postgresql:// URL shared by several instances), `<data dir>/state.db` without a configuration.
A token acts for a password user, who must exist when it is made and whenever it is used.
`create` prints the token once, alone on stdout (details go to stderr); only its SHA-256 digest
is stored, and no command shows a token or a digest again.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from bastion.admin.auth import new_token
from bastion.approvals.errors import ApprovalError
from bastion.approvals.postgres_store import DEFAULT_SCHEMA
from bastion.approvals.service import utc_now
from bastion.approvals.store import ApprovalStore
from bastion.approvals.wiring import POSTGRES_SCHEMES, open_state_store
from bastion.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    add_data_dir_option,
    resolve_data_dir,
    show_usage,
)
from bastion.config.loader import load_config
from bastion.config.model import BastionConfig
from bastion.datadir import DataDir
from bastion.errors import ConfigError
from bastion.identity.users_file import UsersFile

DEFAULT_STORE = "state.db"
DEFAULT_TTL = "30d"
_TTL_RE = re.compile(r"^([1-9][0-9]{0,4})([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

_Handler = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    pass


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "tokens",
        help="create, list and revoke admin API tokens (for automation)",
        description="Manage admin API tokens in the state store directly, without a running "
        "Bastion. Tokens act for a password user.",
    )
    parser.set_defaults(func=show_usage(parser))
    commands = parser.add_subparsers(dest="tokens_command", metavar="SUBCOMMAND")

    create = commands.add_parser(
        "create",
        help="make a token for a password user and print it once",
        description="Make an admin API token for a password user. The token is printed once, "
        "alone on stdout; only its digest is stored.",
    )
    create.add_argument("--user", required=True, metavar="NAME", help="the password user")
    create.add_argument(
        "--ttl",
        type=_ttl,
        default=DEFAULT_TTL,
        metavar="DURATION",
        help=f"lifetime: a number with s, m, h, d or w, or `never` ({DEFAULT_TTL})",
    )
    create.add_argument("--label", default="", help="a note saying what the token is for")
    _add_store_options(create)
    create.set_defaults(func=_guard(run_create))

    listing = commands.add_parser("list", help="list tokens (never the tokens themselves)")
    _add_store_options(listing)
    listing.set_defaults(func=_guard(run_list))

    revoke = commands.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("id", metavar="ID", help="the token's id, as `tokens list` shows it")
    _add_store_options(revoke)
    revoke.set_defaults(func=_guard(run_revoke))


def _add_store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        type=Path,
        metavar="FILE",
        help="Bastion's configuration, for its state store, data dir and users",
    )
    add_data_dir_option(parser)


# The commands.


def run_create(args: argparse.Namespace) -> int:
    """`bastion tokens create --user NAME [--ttl 30d] [--label X]`."""
    config = _config(args)
    data_dir = _data_dir(args, config)
    known = _password_users(config, data_dir)
    if args.user not in known:
        raise UsageError(
            f"{args.user!r} is not a password user of this Bastion (admin API tokens act for "
            "password users: add one with `bastion users add NAME`)"
        )
    token, record = new_token(args.user, label=args.label, now=utc_now(), ttl=args.ttl)
    with _store(config, data_dir, create=True) as store:
        store.add_token(record)
    expires = record.expires_at.isoformat(timespec="seconds") if record.expires_at else "never"
    print(token)
    print(
        f"token {record.id} for {record.user} (expires {expires}); it is shown only this once",
        file=sys.stderr,
    )
    return EXIT_OK


def run_list(args: argparse.Namespace) -> int:
    """`bastion tokens list`."""
    config = _config(args)
    with _store(config, _data_dir(args, config), create=False) as store:
        tokens = store.list_tokens()
    if not tokens:
        print("no admin API tokens")
        return EXIT_OK
    now = utc_now()
    rows = [("ID", "USER", "STATUS", "CREATED", "EXPIRES", "LABEL")]
    for record in tokens:
        if record.revoked:
            status = "revoked"
        elif record.expires_at is not None and record.expires_at <= now:
            status = "expired"
        else:
            status = "active"
        rows.append(
            (
                record.id,
                record.user,
                status,
                record.created_at.isoformat(timespec="seconds"),
                record.expires_at.isoformat(timespec="seconds") if record.expires_at else "never",
                record.label,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())
    return EXIT_OK


def run_revoke(args: argparse.Namespace) -> int:
    """`bastion tokens revoke ID`."""
    config = _config(args)
    with _store(config, _data_dir(args, config), create=False) as store:
        revoked = store.revoke_token(args.id)
    if not revoked:
        print(f"bastion tokens: no active token {args.id!r}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"revoked token {args.id}")
    return EXIT_OK


# Helpers.


def _config(args: argparse.Namespace) -> BastionConfig | None:
    return None if args.config is None else load_config(args.config)


def _data_dir(args: argparse.Namespace, config: BastionConfig | None) -> Path:
    return resolve_data_dir(args.data_dir, config.data_dir if config is not None else None)


def _password_users(config: BastionConfig | None, data_dir: Path) -> set[str]:
    inline = config.identities.users if config is not None else []
    users_file = (
        config.identities.users_file_path(data_dir)
        if config is not None
        else DataDir(data_dir).users_file
    )
    return {user.name for user in [*inline, *UsersFile(users_file).load()]}


@contextmanager
def _store(
    config: BastionConfig | None, data_dir: Path, *, create: bool
) -> Iterator[ApprovalStore]:
    """Open the state store Bastion uses with this configuration, and close it."""
    location = config.state.store if config is not None else DEFAULT_STORE
    schema = config.state.schema_name if config is not None else DEFAULT_SCHEMA
    if not location.startswith(POSTGRES_SCHEMES):
        path = Path(location) if Path(location).is_absolute() else data_dir / location
        if create:
            DataDir(data_dir).ensure()  # owner-only, as Bastion itself creates it
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.exists():
            raise UsageError(
                f"there is no state store at {path} (pass --config or --data-dir for "
                "the one Bastion uses)"
            )
    store = open_state_store(location, data_dir, schema)
    try:
        yield store
    finally:
        store.close()


def _ttl(value: str) -> timedelta | None:
    if value == "never":
        return None
    match = _TTL_RE.match(value)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"not a duration like 90m, 12h, 30d or 4w (or `never`): {value!r}"
        )
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def _guard(handler: _Handler) -> _Handler:
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except UsageError as exc:
            print(f"bastion tokens: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except ConfigError as exc:
            print(f"bastion tokens: {exc.message}", file=sys.stderr)
            if exc.hint:
                print(f"hint: {exc.hint}", file=sys.stderr)
            return EXIT_USAGE
        except (ApprovalError, ValueError) as exc:
            print(f"bastion tokens: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        except OSError as exc:
            print(f"bastion tokens: {exc}", file=sys.stderr)
            return EXIT_FAILURE

    return run

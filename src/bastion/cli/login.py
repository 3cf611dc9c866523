"""`bastion login` and `bastion logout`: get the admin API token other commands use, and drop it.

`login` exchanges a password for an admin API token (POST /v1/login) and keeps it in a file only
its owner can read, `$XDG_CONFIG_HOME/bastion/token` (default ~/.config/bastion/token): a JSON
map from admin URL to token, so one person can be logged in to several Bastions. `logout`
revokes the token on the server and forgets it. The admin URL is resolved, and the token file
kept, by `http.py`, which the other admin API commands share. Passwords come from a no-echo
prompt or $BASTION_PASSWORD, never from the command line. Neither tokens nor passwords are ever
printed; `login` stores its token without showing it.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

import httpx

from bastion.cli.common import EXIT_FAILURE, EXIT_OK
from bastion.cli.http import (
    AdminClient,
    ApiError,
    TokenFile,
    add_admin_url_option,
    report,
    resolve_admin_url,
)

PASSWORD_ENV = "BASTION_PASSWORD"
USER_ENV = "BASTION_USER"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    login = subparsers.add_parser(
        "login",
        help="log in to a running Bastion's admin API and keep the token",
        description="Exchange a password user's password for an admin API token and store it "
        "(owner-only) in $XDG_CONFIG_HOME/bastion/token, keyed by admin URL. The password is "
        f"asked without echo, or taken from ${PASSWORD_ENV}.",
    )
    login.add_argument(
        "user",
        nargs="?",
        metavar="USER",
        help=f"password user to log in as (default: ${USER_ENV}, then your login name)",
    )
    add_admin_url_option(login)
    login.set_defaults(func=run_login)

    logout = subparsers.add_parser(
        "logout",
        help="revoke and forget the stored admin API token",
        description="Revoke the token stored for the admin URL on the server, and remove it "
        "from the token file.",
    )
    add_admin_url_option(logout)
    logout.set_defaults(func=run_logout)


# The commands.


def run_login(args: argparse.Namespace) -> int:
    """`bastion login [USER]`."""
    admin_url = resolve_admin_url(args.admin_url)
    user = args.user or os.environ.get(USER_ENV) or getpass.getuser()
    host = httpx.URL(admin_url).host
    if admin_url.startswith("http://") and host not in ("127.0.0.1", "::1", "localhost"):
        print(
            f"bastion login: warning: {admin_url} is plain http; the password crosses the "
            "network unencrypted (put the admin API behind TLS)",
            file=sys.stderr,
        )
    password = _read_password(f"Password for {user} at {admin_url}: ")
    if password is None:
        print("bastion login: no password entered", file=sys.stderr)
        return EXIT_FAILURE
    try:
        with AdminClient(admin_url) as client:
            result = client.call("POST", "/v1/login", body={"user": user, "password": password})
        token = result.get("token") if isinstance(result, dict) else None
        if not isinstance(token, str):
            raise ApiError(f"{admin_url} answered the login without a token")
        TokenFile.default().put(admin_url, token)
    except ApiError as exc:
        if exc.status == 401:
            print("bastion login: login failed: wrong user name or password", file=sys.stderr)
            return EXIT_FAILURE
        return report(exc, "login")
    except OSError as exc:
        print(f"bastion login: cannot store the token: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    expires = result.get("expires_at") or "never"
    print(f"logged in to {admin_url} as {result.get('user', user)} (token expires {expires})")
    return EXIT_OK


def run_logout(args: argparse.Namespace) -> int:
    """`bastion logout`."""
    admin_url = resolve_admin_url(args.admin_url)
    token_file = TokenFile.default()
    try:
        token = token_file.get(admin_url)
        if token is None:
            print(f"not logged in to {admin_url}")
            return EXIT_OK
        note = ""
        try:
            with AdminClient(admin_url, token) as client:
                client.call("POST", "/v1/logout")
        except ApiError as exc:
            # Forgetting the token locally is what the user asked for; say what else happened.
            note = "" if exc.status == 401 else f" (the server did not revoke it: {exc.message})"
        token_file.remove(admin_url)
    except ApiError as exc:
        return report(exc, "logout")
    except OSError as exc:
        print(f"bastion logout: cannot update {token_file.path}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"logged out of {admin_url}{note}")
    return EXIT_OK


def _read_password(prompt: str) -> str | None:
    """$BASTION_PASSWORD, a no-echo prompt on a terminal, or one line of stdin."""
    password = os.environ.get(PASSWORD_ENV)
    if password:
        return password
    try:
        if sys.stdin is not None and sys.stdin.isatty():
            password = getpass.getpass(prompt)
        else:
            line = sys.stdin.readline() if sys.stdin is not None else ""
            password = line.removesuffix("\n").removesuffix("\r")
    except (EOFError, KeyboardInterrupt):
        return None
    return password or None

"""`bastion login` and `bastion logout`, and what every command talking to the admin API shares.

`login` exchanges a password for an admin API token (POST /v1/login) and keeps it in a file only
its owner can read, `$XDG_CONFIG_HOME/bastion/token` (default ~/.config/bastion/token): a JSON
map from admin URL to token, so one person can be logged in to several Bastions. `logout`
revokes the token on the server and forgets it. The admin URL is `--admin-url`, then
$BASTION_ADMIN_URL, then http://127.0.0.1:8642; a command's token is `--token`, then
$BASTION_TOKEN, then the stored one. Passwords come from a no-echo prompt or $BASTION_PASSWORD,
never from the command line. Neither tokens nor passwords are ever printed; `login` stores
its token without showing it.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx

from bastion.cli.common import EXIT_FAILURE, EXIT_OK

DEFAULT_ADMIN_URL = "http://127.0.0.1:8642"
ADMIN_URL_ENV = "BASTION_ADMIN_URL"
TOKEN_ENV = "BASTION_TOKEN"
PASSWORD_ENV = "BASTION_PASSWORD"
USER_ENV = "BASTION_USER"
TIMEOUT_SECONDS = 10.0


class ApiError(Exception):
    """The admin API could not be reached, or answered with an error; `message` says what to
    do next."""

    def __init__(self, message: str, status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class NotLoggedIn(ApiError):
    pass


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


# Shared with the other admin API commands.


def add_admin_url_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--admin-url",
        default=None,
        metavar="URL",
        help=f"a running Bastion's admin API (default: ${ADMIN_URL_ENV}, then {DEFAULT_ADMIN_URL})",
    )


def add_token_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--token",
        default=None,
        help=f"admin API token (default: ${TOKEN_ENV}, then the one `bastion login` stored; "
        "prefer those: a token on the command line is visible to other local users)",
    )


def resolve_admin_url(value: str | None) -> str:
    url = value or os.environ.get(ADMIN_URL_ENV) or DEFAULT_ADMIN_URL
    return url.rstrip("/")


def resolve_token(value: str | None, admin_url: str) -> str:
    """--token, then $BASTION_TOKEN, then the stored token for `admin_url`."""
    token = value or os.environ.get(TOKEN_ENV) or TokenFile.default().get(admin_url)
    if not token:
        raise NotLoggedIn(
            f"not logged in to {admin_url}: run `bastion login USER` "
            f"(or pass --token, or set ${TOKEN_ENV})"
        )
    return token


class TokenFile:
    """The JSON map admin URL -> token, written atomically and readable by its owner only."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def default(cls) -> TokenFile:
        base = os.environ.get("XDG_CONFIG_HOME", "")
        # The XDG spec says relative values are to be ignored.
        root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
        return cls(root / "bastion" / "token")

    def load(self) -> dict[str, str]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ApiError(f"cannot read the token file {self.path}: {exc.strerror}") from None
        try:
            tokens = json.loads(text)
        except ValueError:
            tokens = None
        if not isinstance(tokens, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in tokens.items()
        ):
            raise ApiError(
                f"the token file {self.path} is damaged: delete it and run `bastion login USER`"
            )
        return tokens

    def get(self, admin_url: str) -> str | None:
        return self.load().get(admin_url)

    def put(self, admin_url: str, token: str) -> None:
        tokens = self.load()
        tokens[admin_url] = token
        self._write(tokens)

    def remove(self, admin_url: str) -> bool:
        tokens = self.load()
        if tokens.pop(admin_url, None) is None:
            return False
        if tokens:
            self._write(tokens)
        else:
            self.path.unlink(missing_ok=True)
        return True

    def _write(self, tokens: dict[str, str]) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        temp.unlink(missing_ok=True)
        # Created 0600 from the start: the token is never readable by others, not even briefly.
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(tokens, handle, indent=2, sort_keys=True)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise


class AdminClient:
    """A small synchronous client for the admin API's JSON endpoints."""

    def __init__(
        self,
        admin_url: str,
        token: str | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Accept": "application/json", "User-Agent": "bastion-cli"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        self.admin_url = admin_url
        self._http = httpx.Client(
            base_url=admin_url, headers=headers, timeout=TIMEOUT_SECONDS, transport=transport
        )

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def call(
        self,
        method: str,
        path: str,
        *,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        """The JSON answer; ApiError for a transport failure or an error status."""
        try:
            response = self._http.request(method, path, json=body, params=params)
        except httpx.TimeoutException:
            raise ApiError(f"{self.admin_url} did not answer in {TIMEOUT_SECONDS:g}s") from None
        except httpx.HTTPError as exc:
            raise ApiError(
                f"cannot reach Bastion's admin API at {self.admin_url} ({exc}): is Bastion "
                f"running with listeners.admin set? (choose with --admin-url or ${ADMIN_URL_ENV})"
            ) from None
        try:
            document = response.json()
        except ValueError:
            document = None
        if response.is_success and document is not None:
            return document
        if isinstance(document, dict) and isinstance(document.get("message"), str):
            raise ApiError(document["message"], response.status_code, str(document.get("error")))
        raise ApiError(
            f"{self.admin_url} answered HTTP {response.status_code} without a Bastion error; "
            "is this the admin API's URL?",
            response.status_code,
        )


def report(exc: ApiError, command: str) -> int:
    """Print an API failure for people and return the exit status for it."""
    message = exc.message
    if exc.status == 401 and not isinstance(exc, NotLoggedIn):
        message = (
            "the admin API refused the token (expired, revoked or invalid): "
            "run `bastion login USER`"
        )
    print(f"bastion {command}: {message}", file=sys.stderr)
    return EXIT_FAILURE


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

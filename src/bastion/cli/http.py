"""The admin API client every command talking to a running Bastion shares.

Owns finding the admin API and the caller's token (`--admin-url`, then $BASTION_ADMIN_URL, then
http://127.0.0.1:8642; `--token`, then $BASTION_TOKEN, then the token `bastion login` stored in
`$XDG_CONFIG_HOME/bastion/token`), calling an endpoint, and turning every way that can fail into
one line on stderr and exit status 1. It also owns printing the answers: what the API returns
was partly written by others (clients, requesters), so text goes through `visible` before it
reaches a terminal. It parses no command's arguments and never prints a token.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from bastion.cli.common import EXIT_FAILURE

DEFAULT_ADMIN_URL = "http://127.0.0.1:8642"
ADMIN_URL_ENV = "BASTION_ADMIN_URL"
TOKEN_ENV = "BASTION_TOKEN"
TIMEOUT_SECONDS = 10.0

Handler = Callable[[argparse.Namespace], int]


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


# Options and their resolution.


def add_admin_url_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--admin-url",
        default=None,
        metavar="URL",
        help=f"a running Bastion's admin API (default: ${ADMIN_URL_ENV}, then {DEFAULT_ADMIN_URL})",
    )


def add_client_options(parser: argparse.ArgumentParser) -> None:
    """`--admin-url` and `--token`, for a command that calls the API as the logged-in user."""
    add_admin_url_option(parser)
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


# Calling the API.


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


def call(
    args: argparse.Namespace,
    method: str,
    path: str,
    *,
    body: dict[str, Any] | None = None,
    params: dict[str, str] | None = None,
) -> Any:
    """One call to the API at `args.admin_url` with `args.token` (see `add_client_options`),
    resolved as the module docstring says; ApiError when it cannot be made or is refused."""
    admin_url = resolve_admin_url(args.admin_url)
    with AdminClient(admin_url, resolve_token(args.token, admin_url)) as client:
        return client.call(method, path, body=body, params=params)


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


def reporting(handler: Handler, command: str) -> Handler:
    """`handler`, with an ApiError it raises printed by `report` as `bastion COMMAND: ...`."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except ApiError as exc:
            return report(exc, command)

    return run


# Printing the answers.


def visible(text: str, *, keep_newlines: bool = False) -> str:
    """`text` with control and format characters (ANSI escapes, carriage returns, bidi
    overrides, zero-width characters) shown as escapes instead of acting on the terminal."""
    kept = "\n\t" if keep_newlines else ""
    return "".join(
        char
        if char in kept or unicodedata.category(char) not in ("Cc", "Cf", "Zl", "Zp")
        else f"\\u{ord(char):04x}"
        for char in text
    )


def print_json(document: Any) -> None:
    """An answer as the API gave it, for scripts."""
    print(json.dumps(document, indent=2, ensure_ascii=False))


def print_table(rows: Sequence[Sequence[str]]) -> None:
    """A header and rows of already `visible` cells, in columns; the last column is not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())

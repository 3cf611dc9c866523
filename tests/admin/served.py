"""The admin app served over real HTTP, and the `bastion` command line run against it.

`ServedAdmin` serves an app with the project's own AdminServer (uvicorn) on 127.0.0.1, on an
event loop in a thread, as `bastion serve` does. `Cli` runs `bastion` in process through main()
as a user with a config directory of their own and no BASTION_* variables, and hands back each
run's exit status and output (the `cli` fixture in conftest.py makes one).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.applications import Starlette

from bastion.admin.server import AdminServer
from bastion.cli.main import main

# What a developer's shell may set that would change what the commands do.
CLI_VARIABLES = (
    "BASTION_ADMIN_URL",
    "BASTION_TOKEN",
    "BASTION_PASSWORD",
    "BASTION_USER",
    "BASTION_DATA_DIR",
)


class ServedAdmin:
    """`app` served on 127.0.0.1 at `url` until `close`."""

    def __init__(self, app: Starlette) -> None:
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.port = 0
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(app),), daemon=True)
        self._thread.start()
        assert self._started.wait(10), "the admin server did not start"
        if self._error is not None:
            raise self._error
        self.url = f"http://127.0.0.1:{self.port}"

    async def _serve(self, app: Starlette) -> None:
        server = AdminServer(app, "127.0.0.1", 0)
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await server.start()
        except BaseException as exc:
            self._error = exc
            self._started.set()
            return
        self.port = server.port
        self._started.set()
        await self._stop.wait()
        await server.stop()

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@dataclass(frozen=True)
class Run:
    """One `bastion` run: its exit status and what it printed."""

    code: int
    out: str
    err: str


class Cli:
    """`cli(*args)` runs `bastion ARGS`; argparse's usage errors come back as status 2."""

    def __init__(
        self,
        config_home: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        self.token_file = config_home / "bastion" / "token"
        self._monkeypatch = monkeypatch
        self._capsys = capsys
        monkeypatch.setenv("XDG_CONFIG_HOME", str(config_home))
        for name in CLI_VARIABLES:
            monkeypatch.delenv(name, raising=False)

    def use(self, admin_url: str) -> None:
        """Reach the admin API at `admin_url` by default, as $BASTION_ADMIN_URL does."""
        self._monkeypatch.setenv("BASTION_ADMIN_URL", admin_url)

    def __call__(self, *args: str) -> Run:
        self._capsys.readouterr()  # only this run's output
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = self._capsys.readouterr()
        return Run(code, captured.out, captured.err)

    def login(self, user: str, *args: str, password: str | None = None) -> Run:
        """`bastion login USER ARGS` with the password (`USER-pw` unless given) in
        $BASTION_PASSWORD, which stays set, as a user's shell would keep it."""
        self._monkeypatch.setenv("BASTION_PASSWORD", password or f"{user}-pw")
        return self("login", user, *args)

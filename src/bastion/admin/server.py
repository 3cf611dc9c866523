"""Serving the admin application with uvicorn inside Bastion's own event loop.

uvicorn normally owns the process's signals; embedded here it must not, because `bastion
serve` handles SIGINT/SIGTERM itself and stops the admin server along with the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette

log = logging.getLogger("bastion.admin")


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class AdminServer:
    def __init__(self, app: Starlette, host: str, port: int) -> None:
        config = uvicorn.Config(
            app, host=host, port=port, log_config=None, access_log=False, lifespan="off"
        )
        self._server = _EmbeddedServer(config)
        self._task: asyncio.Task[None] | None = None
        self.host, self.port = host, port

    async def start(self) -> None:
        # Bind here so an address in use is our error to report, not a sys.exit in uvicorn.
        sock = socket.create_server((self.host, self.port), reuse_port=False, backlog=128)
        self.port = sock.getsockname()[1]
        self._task = asyncio.get_running_loop().create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises the startup error, e.g. address in use
                raise OSError(f"admin API could not listen on {self.host}:{self.port}")
            await asyncio.sleep(0.01)
        log.info(
            "listening",
            extra={"fields": {"protocol": "http", "host": self.host, "port": self.port}},
        )

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._task, timeout=5)
        self._task = None

"""A real Bastion process for integration tests: config on disk, users in its data dir,
`bastion serve` in a subprocess, readiness by TCP connect, logs kept for assertions."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from psycopg.conninfo import make_conninfo

from bastion.identity.records import IdentityKind, UserRecord
from bastion.identity.scram import make_verifier
from bastion.identity.users_file import UsersFile


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class TestUser:
    name: str
    password: str
    groups: tuple[str, ...] = ()
    kind: IdentityKind = IdentityKind.HUMAN


DEFAULT_USERS = (
    TestUser("alice", "alice-secret-1", ("analysts",)),
    TestUser("agent7", "agent-secret-7", ("reporting",), IdentityKind.AGENT),
)


@dataclass
class BastionProcess:
    workdir: Path
    targets: list[dict[str, Any]]
    users: tuple[TestUser, ...] = DEFAULT_USERS
    listener: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    admin_port: int | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def log_path(self) -> Path:
        return self.workdir / "bastion.log"

    @property
    def config_path(self) -> Path:
        return self.workdir / "bastion.yaml"

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "tls" / "ca.crt"

    def write(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True, mode=0o700)
        self.port = self.port or free_port()
        listener = {"host": "127.0.0.1", "port": self.port, "tls": "auto", **self.listener}
        listeners: dict[str, Any] = {"postgres": [listener]}
        if self.admin_port is not None:
            self.admin_port = self.admin_port or free_port()
            listeners["admin"] = {"host": "127.0.0.1", "port": self.admin_port}
        config = {
            "listeners": listeners,
            "targets": self.targets,
            **self.extra,
        }
        self.config_path.write_text(yaml.safe_dump(config))
        users = UsersFile(self.data_dir / "users.yaml")
        for user in self.users:
            users.add(
                UserRecord(
                    name=user.name,
                    groups=user.groups,
                    kind=user.kind,
                    scram=make_verifier(user.password),
                ),
                replace=True,
            )

    def start(self, timeout: float = 15.0) -> BastionProcess:
        self.write()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bastion.cli.main",
                    "serve",
                    "--config",
                    str(self.config_path),
                    "--data-dir",
                    str(self.data_dir),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"bastion exited early:\n{self.log_text()}")
            if self._accepts(self.port) and (
                self.admin_port is None or self._accepts(self.admin_port)
            ):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"bastion did not start listening:\n{self.log_text()}")

    @staticmethod
    def _accepts(port: int) -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            return False
        return True

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        return code

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log_text().splitlines():
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
        return events

    def dsn(
        self, user: str = "alice", password: str | None = None, dbname: str = "shop", **params: Any
    ) -> str:
        if password is None:
            password = next(u.password for u in self.users if u.name == user)
        return make_conninfo(
            "",
            host="127.0.0.1",
            port=self.port,
            user=user,
            password=password,
            dbname=dbname,
            **params,
        )

    def rss_kib(self) -> int:
        return _status_kib(self.pid, "VmRSS")

    def peak_rss_kib(self) -> int:
        return _status_kib(self.pid, "VmHWM")


def _status_kib(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field_name} not found for pid {pid}")


@contextlib.contextmanager
def running_bastion(
    workdir: Path, targets: list[dict[str, Any]], **kwargs: Any
) -> Iterator[BastionProcess]:
    proc = BastionProcess(workdir=workdir, targets=targets, **kwargs).start()
    try:
        yield proc
    finally:
        proc.stop()

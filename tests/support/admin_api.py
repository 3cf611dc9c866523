"""Reaching a running Bastion's admin API from end-to-end tests: its URL, a login over HTTP, and
the `bastion` command line pointed at it as a separate process, as an operator runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from support.bastion import BastionProcess

AdminCli = Callable[..., subprocess.CompletedProcess[str]]


def admin_url(proc: BastionProcess) -> str:
    """The admin API of a Bastion started with `admin_port`."""
    return f"http://127.0.0.1:{proc.admin_port}"


def login(proc: BastionProcess, user: str, password: str) -> dict[str, str]:
    """The headers that authenticate as `user`, from a password login (POST /v1/login)."""
    reply = httpx.post(f"{admin_url(proc)}/v1/login", json={"user": user, "password": password})
    reply.raise_for_status()
    return {"Authorization": f"Bearer {reply.json()['token']}"}


def admin_cli(proc: BastionProcess, config_home: Path, password: str) -> AdminCli:
    """`cli(*args)` runs `bastion ARGS` against `proc`'s admin API, keeping the token `bastion
    login` stores under `config_home` and logging in with `password`."""
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(config_home),
        "BASTION_ADMIN_URL": admin_url(proc),
        "BASTION_PASSWORD": password,
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bastion.cli.main", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )

    return cli

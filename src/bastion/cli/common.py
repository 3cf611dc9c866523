"""Options shared by several commands: the data dir and the admin URL.

Every command that reads local state takes `--data-dir` (default: $BASTION_DATA_DIR, then
./bastion-data); every command that talks to a running Bastion takes `--admin-url` (default:
$BASTION_ADMIN_URL).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

DEFAULT_DATA_DIR = "./bastion-data"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def add_data_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        default=None,
        help="state directory (default: $BASTION_DATA_DIR, then ./bastion-data)",
    )


def resolve_data_dir(value: str | None, configured: Path | None = None) -> Path:
    """Pick the data dir: the flag, then $BASTION_DATA_DIR, then the config, then the default."""
    if value:
        return Path(value)
    env = os.environ.get("BASTION_DATA_DIR")
    if env:
        return Path(env)
    if configured is not None:
        return configured
    return Path(DEFAULT_DATA_DIR)


def add_admin_url_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("BASTION_ADMIN_URL"),
        help="URL of a running Bastion's admin API (default: $BASTION_ADMIN_URL)",
    )


def show_usage(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """The handler of a command group run without a subcommand: its help, on stderr."""

    def run(_args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return EXIT_USAGE

    return run

"""`bastion serve --config FILE`: run the proxy in the foreground."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from bastion.app import run_event_loop, serve_until_stopped
from bastion.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    add_data_dir_option,
    resolve_data_dir,
)
from bastion.config.loader import load_config
from bastion.datadir import DataDir
from bastion.errors import BastionError, ConfigError
from bastion.logs import configure_logging


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve", help="run Bastion with a configuration file"
    )
    parser.add_argument("--config", "-c", required=True, help="path to bastion.yaml")
    add_data_dir_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(Path(args.config))
    except ConfigError as exc:
        print(f"bastion: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(config.logging.level, config.logging.format)
    data_dir = DataDir(resolve_data_dir(args.data_dir, config.data_dir)).ensure()
    try:
        run_event_loop(serve_until_stopped(config, data_dir))
    except ConfigError as exc:
        print(f"bastion: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except BastionError as exc:
        print(f"bastion: {exc.message}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:
        print(f"bastion: cannot start: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK

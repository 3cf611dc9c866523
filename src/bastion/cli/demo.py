"""`bastion demo`: Bastion in front of a throwaway PostgreSQL with a realistic sample shop."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from bastion.app import RunningBastion, run_event_loop, serve_until_stopped
from bastion.cli.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, add_data_dir_option
from bastion.datadir import DataDir
from bastion.demo.setup import connection_lines, prepare_demo, start_demo_server
from bastion.errors import BastionError
from bastion.logs import configure_logging


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo", help="run Bastion in front of a throwaway PostgreSQL with sample data"
    )
    parser.add_argument(
        "--listen", default="127.0.0.1:6432", help="HOST:PORT for clients (default 127.0.0.1:6432)"
    )
    parser.add_argument(
        "--admin",
        default="127.0.0.1:8642",
        help="HOST:PORT for the admin HTTP API, or 'off' (default 127.0.0.1:8642)",
    )
    add_data_dir_option(parser)
    parser.set_defaults(func=run)


def _parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host or "127.0.0.1", int(port)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # Until the event loop takes over signals, SIGTERM must still unwind through `finally`
    # so the throwaway server is stopped and removed.
    raise SystemExit(EXIT_OK)


def run(args: argparse.Namespace) -> int:
    try:
        host, port = _parse_listen(args.listen)
        admin = None if args.admin == "off" else _parse_listen(args.admin)
    except ValueError as exc:
        print(f"bastion demo: {exc}", file=sys.stderr)
        return EXIT_USAGE
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    configure_logging("info", "json")
    # The demo's state is throwaway too, unless the user names a data dir to keep.
    keep = args.data_dir is not None
    path = Path(args.data_dir) if keep else Path(tempfile.mkdtemp(prefix="bastion-demo-"))
    data_dir = DataDir(path).ensure()
    print("Starting a throwaway PostgreSQL and loading the sample shop...", file=sys.stderr)
    try:
        server = start_demo_server()
    except BastionError as exc:
        print(f"bastion demo: {exc.message}", file=sys.stderr)
        return EXIT_FAILURE
    try:
        demo = prepare_demo(server, data_dir, host, port, admin)

        async def announce(running: RunningBastion) -> None:
            print(connection_lines(demo), file=sys.stderr, flush=True)

        run_event_loop(serve_until_stopped(demo.config, data_dir, on_started=announce))
    except BastionError as exc:
        print(f"bastion demo: {exc.message}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:
        print(f"bastion demo: cannot start: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        server.stop()
        if not keep:
            shutil.rmtree(path, ignore_errors=True)
    return EXIT_OK

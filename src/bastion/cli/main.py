"""Entry point of the `bastion` command: builds the parser from the command modules.

Each command module exposes `register(subparsers)`, which adds its parser and sets `func` to a
callable taking the parsed arguments and returning an exit status.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from bastion import __version__
from bastion.cli.common import EXIT_USAGE

COMMAND_MODULES = (
    "bastion.cli.serve",
    "bastion.cli.demo",
    "bastion.cli.config_cmd",
    "bastion.cli.users",
    "bastion.cli.policy",
    "bastion.cli.audit",
    "bastion.cli.login",
    "bastion.cli.approvals",
    "bastion.cli.sessions",
    "bastion.cli.tokens",
    "bastion.cli.classify",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bastion", description="Identity-aware governance proxy for databases."
    )
    parser.add_argument("--version", action="version", version=f"bastion {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(module_name)
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    result: int = func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())

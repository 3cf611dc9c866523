"""The `bastion config` commands: check a configuration file, print its schema or reference.

This module only parses arguments and prints; loading and validation belong to
`bastion.config`. Secrets are resolved to prove they can be read, and never printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bastion.cli.common import EXIT_OK, EXIT_USAGE, show_usage
from bastion.config import config_json_schema, load_config
from bastion.config.docs import render_reference
from bastion.errors import ConfigError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `bastion config` and its subcommands."""
    parser = subparsers.add_parser(
        "config",
        help="check a configuration file, or print its schema or reference",
        description="Work with Bastion's configuration file.",
    )
    parser.set_defaults(func=show_usage(parser))
    commands = parser.add_subparsers(dest="config_command", metavar="SUBCOMMAND")

    check = commands.add_parser(
        "check",
        help="validate a configuration file and the secrets it references",
        description="Load FILE, report every problem, and check that each secret reference "
        "can be read. Exits 0 when the file is valid, 2 otherwise.",
    )
    check.add_argument("file", metavar="FILE", type=Path, help="configuration file to check")
    check.add_argument(
        "--no-secrets",
        action="store_true",
        help="do not try to read the secrets the file references",
    )
    check.set_defaults(func=run_check)

    schema = commands.add_parser(
        "schema",
        help="print the JSON Schema of the configuration file",
        description="Print the JSON Schema of the configuration file, for editors.",
    )
    schema.set_defaults(func=run_schema)

    docs = commands.add_parser(
        "docs",
        help="print the configuration reference (Markdown)",
        description="Print the Markdown reference of every configuration key.",
    )
    docs.set_defaults(func=run_docs)


def run_check(args: argparse.Namespace) -> int:
    """`bastion config check FILE [--no-secrets]`."""
    path: Path = args.file
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(exc.message, file=sys.stderr)
        return EXIT_USAGE
    failures = 0
    if not args.no_secrets:
        for location in config.secret_references():
            try:
                config.resolve_secret(location.ref)
            except ConfigError as exc:
                failures += 1
                print(f"{path}: {location.path}: {exc.message}", file=sys.stderr)
    if failures:
        return EXIT_USAGE
    print(
        f"{path}: ok ({len(config.listeners.postgres)} listeners, {len(config.targets)} targets, "
        f"{len(config.identities.users)} users, {len(config.identities.oidc)} OIDC issuers)"
    )
    return EXIT_OK


def run_schema(args: argparse.Namespace) -> int:
    """`bastion config schema`."""
    print(json.dumps(config_json_schema(), indent=2))
    return EXIT_OK


def run_docs(args: argparse.Namespace) -> int:
    """`bastion config docs`."""
    sys.stdout.write(render_reference())
    return EXIT_OK

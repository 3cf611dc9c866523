"""The `bastion policy` commands: check a policy file, explain a decision, list guardrails.

This module only parses arguments and prints; loading, deciding and explaining belong to
`bastion.policy`. `explain` decides exactly as a running Bastion would (the same engine, no
cache) for an identity and target described on the command line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bastion.cli.common import EXIT_OK, EXIT_USAGE, show_usage
from bastion.config.loader import load_config
from bastion.config.model import BastionConfig
from bastion.errors import ConfigError
from bastion.identity.directory import Identity
from bastion.identity.records import IdentityKind
from bastion.pipeline.context import ConnectionContext
from bastion.policy.consistency import TargetFacts, check_against_targets
from bastion.policy.engine import PolicyEngine
from bastion.policy.explain import render_json, render_text
from bastion.policy.guardrails import GUARDRAILS
from bastion.policy.loader import load_policy
from bastion.policy.model import Policy, policy_json_schema
from bastion.sql.analyze import analyze

DEFAULT_AUTH_METHOD = "scram-sha-256"
DEFAULT_SOURCE_IP = "127.0.0.1"
DEFAULT_TLS_VERSION = "TLSv1.3"


class UsageError(Exception):
    """A problem with the command line or the files it names, printed as is."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `bastion policy` and its subcommands."""
    parser = subparsers.add_parser(
        "policy",
        help="check a policy file, or explain how it decides a statement",
        description="Work with Bastion's policy file.",
    )
    parser.set_defaults(func=show_usage(parser))
    commands = parser.add_subparsers(dest="policy_command", metavar="SUBCOMMAND")

    check = commands.add_parser(
        "check",
        help="validate a policy file",
        description="Load FILE and report every problem: unknown keys, bad patterns, CEL "
        "conditions that do not compile, duplicate rule ids, unknown guardrails. With "
        "--config, also check that session rules only choose credentials the targets have. "
        "Exits 0 when the file is valid, 2 otherwise.",
    )
    check.add_argument("file", metavar="FILE", type=Path, help="policy file to check")
    check.add_argument(
        "--config",
        type=Path,
        metavar="CONFIG",
        help="Bastion configuration whose targets the policy must fit",
    )
    check.set_defaults(func=run_check)

    explain = commands.add_parser(
        "explain",
        help="show the decision for a statement, and which rules led to it",
        description="Analyze SQL, decide it for the identity and target given, and print the "
        "decision, every rule and guardrail that matched (and the near misses, with what "
        "differs), and what the analyzer found. Give the policy with --policy, or with "
        "--config (its `policy` key); --config also supplies the target's labels.",
    )
    explain.add_argument("sql", metavar="SQL", help="one or more SQL statements")
    explain.add_argument("--policy", type=Path, metavar="FILE", help="policy file")
    explain.add_argument(
        "--config", type=Path, metavar="CONFIG", help="Bastion configuration (policy, labels)"
    )
    explain.add_argument("--user", required=True, help="identity name")
    explain.add_argument(
        "--group",
        dest="groups",
        action="append",
        default=[],
        metavar="G",
        help="group of the identity (repeat for several)",
    )
    explain.add_argument(
        "--kind",
        choices=[kind.value for kind in IdentityKind],
        default=IdentityKind.HUMAN.value,
        help="identity kind (default: human)",
    )
    explain.add_argument(
        "--auth-method",
        default=DEFAULT_AUTH_METHOD,
        help=f"how the identity authenticated (default: {DEFAULT_AUTH_METHOD})",
    )
    explain.add_argument("--target", required=True, help="target name (the client's dbname)")
    explain.add_argument(
        "--label",
        dest="labels",
        action="append",
        default=[],
        metavar="K=V",
        help="target label (repeat for several; adds to or replaces the configured labels)",
    )
    explain.add_argument(
        "--source-ip",
        default=DEFAULT_SOURCE_IP,
        help=f"client address (default: {DEFAULT_SOURCE_IP})",
    )
    explain.add_argument("--source-port", type=int, default=50000, help="client port")
    explain.add_argument("--tls", action="store_true", help="the client uses TLS")
    explain.add_argument(
        "--tls-version", help=f"TLS version, implies --tls (default: {DEFAULT_TLS_VERSION})"
    )
    explain.add_argument(
        "--at",
        metavar="TIME",
        help="decide as of this time, ISO 8601 (default: now); without a zone, UTC",
    )
    explain.add_argument("--json", action="store_true", help="print JSON for machines")
    explain.set_defaults(func=run_explain)

    schema = commands.add_parser(
        "schema",
        help="print the JSON Schema of the policy file",
        description="Print the JSON Schema of the policy file, for editors.",
    )
    schema.set_defaults(func=run_schema)

    guardrails = commands.add_parser(
        "guardrails",
        help="list the built-in guardrails",
        description="List the built-in guardrails with their default effects.",
    )
    guardrails.set_defaults(func=run_guardrails)


def run_check(args: argparse.Namespace) -> int:
    """`bastion policy check FILE [--config CONFIG]`."""
    path: Path = args.file
    try:
        policy = load_policy(path)
        config = load_config(args.config) if args.config is not None else None
    except ConfigError as exc:
        print(exc.message, file=sys.stderr)
        return EXIT_USAGE
    if config is not None:
        findings = check_against_targets(policy, _target_facts(config))
        for warning in findings.warnings:
            print(f"{path}: warning: {warning}", file=sys.stderr)
        for error in findings.errors:
            print(f"{path}: {error}", file=sys.stderr)
        if findings.errors:
            return EXIT_USAGE
    overrides = len(policy.guardrails.overrides)
    print(
        f"{path}: ok ({len(policy.rules)} rules, {len(policy.sessions)} session rules, "
        f"guardrails {policy.guardrails.enabled} with {overrides} overrides)"
    )
    return EXIT_OK


def run_explain(args: argparse.Namespace) -> int:
    """`bastion policy explain ... SQL`."""
    try:
        policy, labels = _policy_and_labels(args)
        now = _moment(args.at)
        labels.update(_parse_labels(args.labels))
    except ConfigError as exc:
        print(exc.message, file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"bastion policy explain: {exc}", file=sys.stderr)
        return EXIT_USAGE
    statements = analyze(args.sql)
    if not statements:
        print("bastion policy explain: SQL has no statement", file=sys.stderr)
        return EXIT_USAGE
    tls_version = args.tls_version or (DEFAULT_TLS_VERSION if args.tls else None)
    context = ConnectionContext(
        session_id="explain",
        identity=Identity(
            name=args.user,
            groups=tuple(args.groups),
            kind=IdentityKind(args.kind),
            auth_method=args.auth_method,
        ),
        source_ip=args.source_ip,
        source_port=args.source_port,
        tls_version=tls_version,
        target=args.target,
        target_labels=labels,
    )
    engine = PolicyEngine(policy, clock=lambda: now)
    explanation = engine.explain(context, statements)
    sys.stdout.write(render_json(explanation) + "\n" if args.json else render_text(explanation))
    return EXIT_OK


def run_schema(args: argparse.Namespace) -> int:
    """`bastion policy schema`."""
    print(json.dumps(policy_json_schema(), indent=2))
    return EXIT_OK


def run_guardrails(args: argparse.Namespace) -> int:
    """`bastion policy guardrails`."""
    width = max(len(name) for name in GUARDRAILS)
    for guardrail in GUARDRAILS.values():
        print(f"{guardrail.id:<{width}}  {guardrail.default_effect:<16}  {guardrail.summary}")
    return EXIT_OK


def _policy_and_labels(args: argparse.Namespace) -> tuple[Policy, dict[str, str]]:
    labels: dict[str, str] = {}
    policy_path: Path | None = args.policy
    if args.config is not None:
        config = load_config(args.config)
        target = config.target_named(args.target)
        if target is None:
            raise UsageError(f"{args.config}: no target named {args.target!r}")
        labels.update(target.labels)
        if policy_path is None:
            policy_path = _configured_policy(config, args.config)
    if policy_path is None:
        raise UsageError("give the policy with --policy FILE or --config CONFIG")
    return load_policy(policy_path), labels


def _configured_policy(config: BastionConfig, config_path: Path) -> Path:
    configured = getattr(config, "policy", None)
    if configured is None:
        raise UsageError(f"{config_path}: no `policy` key; give the policy with --policy FILE")
    path = Path(configured)
    if not path.is_absolute() and config.source_dir is not None:
        path = config.source_dir / path
    return path


def _target_facts(config: BastionConfig) -> list[TargetFacts]:
    return [
        TargetFacts(target.name, dict(target.labels), frozenset(target.credentials))
        for target in config.targets
    ]


def _parse_labels(values: list[str]) -> dict[str, str]:
    labels = {}
    for value in values:
        key, sep, label = value.partition("=")
        if not sep or not key:
            raise UsageError(f"--label {value!r}: write KEY=VALUE")
        labels[key] = label
    return labels


def _moment(value: str | None) -> float:
    if value is None:
        return time.time()
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"--at {value!r}: not an ISO 8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()

"""`bastion classify --target NAME`: what masking does with every column of a target, and why.

This module only parses arguments, connects through `bastion.catalog` with the target's
default credential (as the running proxy does), and prints: a table for people or JSON for
machines. Deciding belongs to `bastion.catalog` and `bastion.masking`; no secret is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.app import build_targets
from bastion.catalog.classify import classify_catalog
from bastion.catalog.connect import CatalogSource
from bastion.catalog.errors import CatalogUnavailable
from bastion.catalog.loader import read_catalog
from bastion.catalog.model import Catalog, ColumnKey, RelationKind
from bastion.cli.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, add_data_dir_option
from bastion.config.loader import load_config
from bastion.config.model import BastionConfig, Target
from bastion.errors import BastionError, ConfigError
from bastion.masking.classifier import Action, CatalogColumn, Classification

DEFAULT_CONFIG = "bastion.yaml"
CONFIG_ENV = "BASTION_CONFIG"
_KIND_NAMES = {
    RelationKind.TABLE: "table",
    RelationKind.PARTITIONED_TABLE: "partitioned table",
    RelationKind.VIEW: "view",
    RelationKind.MATERIALIZED_VIEW: "materialized view",
    RelationKind.FOREIGN_TABLE: "foreign table",
}
_HEADERS = ("COLUMN", "TYPE", "ACTION", "CLASS", "STRATEGY", "REASON")


@dataclass(frozen=True, slots=True)
class _Row:
    column: CatalogColumn
    kind: str
    decided: Classification

    def cells(self) -> tuple[str, ...]:
        decided = self.decided
        return (
            self.column.qualified,
            self.column.type_name,
            decided.action.value,
            decided.sensitive_class.value if decided.sensitive_class else "-",
            decided.strategy.value if decided.strategy else "-",
            decided.reason,
        )

    def as_json(self) -> dict[str, Any]:
        decided = self.decided
        return {
            "schema": self.column.schema,
            "table": self.column.table,
            "column": self.column.column,
            "relation_kind": self.kind,
            "table_oid": self.column.table_oid,
            "attnum": self.column.attnum,
            "type": self.column.type_name,
            "action": decided.action.value,
            "class": decided.sensitive_class.value if decided.sensitive_class else None,
            "strategy": decided.strategy.value if decided.strategy else None,
            "reason": decided.reason,
        }


class _Failure(Exception):
    def __init__(self, message: str, status: int, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.hint = hint


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `bastion classify`."""
    parser = subparsers.add_parser(
        "classify",
        help="show how every column of a target is masked, scanned or passed, and why",
        description="Connect to a target with its default credential, read its catalog "
        "(tables, partitions, views, materialized views, foreign tables) and print, for "
        "every column, what masking does with it: pass, mask (with its class and strategy) "
        "or scan (look for secrets inside), and the reason. Labels that name no column are "
        "reported on stderr. Exits 1 when the target cannot be reached.",
    )
    parser.add_argument("--target", "-t", required=True, metavar="NAME", help="target name")
    parser.add_argument(
        "--config",
        "-c",
        type=Path,
        metavar="FILE",
        help=f"Bastion's configuration (default: ${CONFIG_ENV}, then ./{DEFAULT_CONFIG})",
    )
    add_data_dir_option(parser)
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    parser.add_argument(
        "--sensitive-only", action="store_true", help="list only the columns that are masked"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """`bastion classify --target NAME [--config FILE] [--json] [--sensitive-only]`."""
    try:
        config = load_config(_config_path(args.config))
        target = _target(config, args.target)
        catalog = _read(config, target)
    except _Failure as failure:
        print(f"bastion classify: {failure.message}", file=sys.stderr)
        if failure.hint:
            print(f"hint: {failure.hint}", file=sys.stderr)
        return failure.status
    except ConfigError as exc:
        print(f"bastion classify: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    classified = classify_catalog(
        catalog, target.masking_labels, config.masking.strategy_overrides()
    )
    rows = _rows(catalog, classified.classifications, sensitive_only=args.sensitive_only)
    for label in classified.unmatched_labels:
        print(
            f"warning: masking label {label!r} of target {target.name!r} names no column",
            file=sys.stderr,
        )
    if not config.masking.enabled:
        print(
            "note: masking is switched off in this configuration (masking.enabled: false)",
            file=sys.stderr,
        )
    if args.json:
        document = {
            "target": target.name,
            "database": target.database,
            "masking_enabled": config.masking.enabled,
            "columns": [row.as_json() for row in rows],
            "unmatched_labels": list(classified.unmatched_labels),
        }
        print(json.dumps(document, indent=2))
    else:
        sys.stdout.write(_render_table(rows))
        print(_summary(list(classified.classifications.values())))
    return EXIT_OK


def _config_path(given: Path | None) -> Path:
    if given is not None:
        return given
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def _target(config: BastionConfig, name: str) -> Target:
    target = config.target_named(name)
    if target is None:
        known = ", ".join(t.name for t in config.targets) or "none"
        raise _Failure(
            f"{config.source} has no target named {name!r} (targets: {known})", EXIT_USAGE
        )
    return target


def _read(config: BastionConfig, target: Target) -> Catalog:
    try:
        runtime = build_targets(config)[target.name]
        return read_catalog(CatalogSource(runtime, target.tls_ca))
    except CatalogUnavailable as exc:
        raise _Failure(exc.message, EXIT_FAILURE, exc.hint) from exc
    except ConfigError:
        raise
    except BastionError as exc:  # the credential could not be resolved, for instance
        raise _Failure(exc.message, EXIT_FAILURE, exc.hint) from exc
    except OSError as exc:  # the CA bundle could not be loaded
        raise _Failure(f"cannot prepare TLS for target {target.name!r}: {exc}", EXIT_USAGE) from exc


def _rows(
    catalog: Catalog,
    classifications: Mapping[ColumnKey, Classification],
    *,
    sensitive_only: bool,
) -> list[_Row]:
    rows: list[_Row] = []
    for column in sorted(catalog.columns, key=lambda c: (c.schema, c.table, c.attnum)):
        decided = classifications[(column.table_oid, column.attnum)]
        if sensitive_only and decided.action is not Action.MASK:
            continue
        relation = catalog.relations.get(column.table_oid)
        kind = _KIND_NAMES[relation.kind] if relation is not None else "relation"
        if relation is not None and relation.parent_oid is not None:
            kind = "partition"
        rows.append(_Row(column, kind, decided))
    return rows


def _render_table(rows: list[_Row]) -> str:
    if not rows:
        return "no columns to show\n"
    cells = [_HEADERS, *(row.cells() for row in rows)]
    widths = [max(len(line[index]) for line in cells) for index in range(len(_HEADERS) - 1)]
    lines = []
    for line in cells:
        padded = [value.ljust(width) for value, width in zip(line, widths, strict=False)]
        lines.append("  ".join([*padded, line[-1]]).rstrip())
    return "\n".join(lines) + "\n"


def _summary(decisions: list[Classification]) -> str:
    counts = {action: 0 for action in Action}
    for decided in decisions:
        counts[decided.action] += 1
    return (
        f"\n{len(decisions)} columns: {counts[Action.MASK]} masked, "
        f"{counts[Action.SCAN]} scanned, {counts[Action.PASS]} passed"
    )

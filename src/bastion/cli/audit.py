"""`bastion audit`: read, search, verify, export and prune the audit record.

Commands read the local store, `<data dir>/audit.db`, or the PostgreSQL store given with
`--store` (default: $BASTION_AUDIT_STORE; prefer the variable or ~/.pgpass over a password on the
command line). This module only parses arguments and prints; everything else belongs to
`bastion.audit`. Exit status: 0 on success, 1 when `verify` finds a break (or `show` finds no
such record), 2 when the store or a key cannot be read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bastion.audit.export import RotatingFile, export_records, read_export
from bastion.audit.keys import (
    AuditSigner,
    data_dir_key_path,
    data_dir_signer,
    file_signer,
    load_public_key,
    public_key_pem,
)
from bastion.audit.record import KIND_CHECKPOINT, AuditRecord, format_ts
from bastion.audit.retention import prune
from bastion.audit.sqlite_store import SQLiteAuditStore
from bastion.audit.store import DEFAULT_SCHEMA, AuditStore, open_store
from bastion.audit.verify import verify_chain
from bastion.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    add_data_dir_option,
    resolve_data_dir,
    show_usage,
)
from bastion.datadir import DataDir
from bastion.errors import BastionError

STORE_FILE = "audit.db"
STORE_ENV = "BASTION_AUDIT_STORE"
FOLLOW_INTERVAL = 0.5
SEARCH_LIMIT = 100
_SUMMARY_KEYS = ("event", "user", "target", "decision", "rule", "outcome", "statement")
_STATEMENT_WIDTH = 80

_Handler = Callable[[argparse.Namespace], int]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `bastion audit` and its subcommands."""
    parser = subparsers.add_parser(
        "audit",
        help="read, search, verify, export and prune the audit record",
        description="Work with Bastion's tamper-evident audit record.",
    )
    parser.set_defaults(func=show_usage(parser))
    commands = parser.add_subparsers(dest="audit_command", metavar="SUBCOMMAND")

    tail = commands.add_parser("tail", help="print the newest records (-f: keep following)")
    tail.add_argument("-n", type=int, default=10, metavar="N", help="records to print (10)")
    tail.add_argument("-f", "--follow", action="store_true", help="print new records as they come")
    _add_json_option(tail)
    _add_store_options(tail)
    tail.set_defaults(func=_guard(run_tail))

    search = commands.add_parser(
        "search",
        help="find records by user, target, decision, rule, table, kind or time",
        description="Print the records matching every filter given (the newest --limit "
        "of them, oldest first). --since and --until take ISO 8601 times; without a zone, UTC.",
    )
    search.add_argument("--user", help="the identity's name")
    search.add_argument("--target", help="the target (upstream database) name")
    search.add_argument("--decision", help="the policy decision, e.g. allow or deny")
    search.add_argument("--rule", help="the id of the policy rule that decided")
    search.add_argument("--table", help="a table the statement touched (with or without schema)")
    search.add_argument("--kind", help="the record kind: connection, statement, checkpoint, ...")
    search.add_argument("--since", type=_timestamp, help="records at or after this time")
    search.add_argument("--until", type=_timestamp, help="records before this time")
    search.add_argument(
        "--limit", type=int, default=SEARCH_LIMIT, help=f"at most this many ({SEARCH_LIMIT})"
    )
    _add_json_option(search)
    _add_store_options(search)
    search.set_defaults(func=_guard(run_search))

    show = commands.add_parser("show", help="print one record in full")
    show.add_argument("seq", type=int, metavar="SEQ")
    _add_store_options(show)
    show.set_defaults(func=_guard(run_show))

    verify = commands.add_parser(
        "verify",
        help="prove the record intact, or name the first record that is not",
        description="Recompute every hash, check every link and checkpoint signature. Exits 0 "
        "when the record is intact and 1 naming the first bad record otherwise.",
    )
    _add_key_options(verify)
    verify.add_argument(
        "--witness",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="an export (JSON lines) kept elsewhere: its checkpoints must still be in the store "
        "unchanged, which catches deletion of the newest records (repeat for several)",
    )
    _add_store_options(verify)
    verify.set_defaults(func=_guard(run_verify))

    export = commands.add_parser(
        "export",
        help="write records as JSON lines, for SIEM pipelines",
        description="Write records as JSON lines (one record per line, with seq and hash) to "
        "stdout or to a file that is appended to and rotated by size.",
    )
    export.add_argument("--output", type=Path, metavar="FILE", help="file to append to")
    export.add_argument(
        "--rotate-bytes",
        type=int,
        metavar="N",
        help="rotate FILE to FILE.<first seq>-<last seq> before it grows past N bytes",
    )
    export.add_argument("--from-seq", type=int, metavar="SEQ", help="first record to export")
    export.add_argument("--to-seq", type=int, metavar="SEQ", help="last record to export")
    _add_store_options(export)
    export.set_defaults(func=_guard(run_export))

    prune_parser = commands.add_parser(
        "prune",
        help="delete old records, leaving a signed anchor so the rest still verifies",
        description="Verify the record, then delete old records and append a signed anchor "
        "saying where the kept chain starts. Export first if the old records must be kept.",
    )
    keep = prune_parser.add_mutually_exclusive_group(required=True)
    keep.add_argument("--keep-days", type=float, metavar="N", help="keep the last N days")
    keep.add_argument("--keep-records", type=int, metavar="N", help="keep the newest N records")
    prune_parser.add_argument(
        "--no-verify", action="store_true", help="prune without verifying first"
    )
    _add_key_options(prune_parser)
    _add_store_options(prune_parser)
    prune_parser.set_defaults(func=_guard(run_prune))

    public_key = commands.add_parser(
        "public-key",
        help="print the public key that verifies checkpoints (PEM)",
        description="Print the checkpoint signing key's public half, to verify the audit record "
        "elsewhere (`bastion audit verify --public-key FILE`). Creates the key if needed.",
    )
    public_key.add_argument("--signing-key", type=Path, metavar="FILE", help=_SIGNING_KEY_HELP)
    add_data_dir_option(public_key)
    public_key.set_defaults(func=_guard(run_public_key))


_SIGNING_KEY_HELP = "PEM signing key file (default: the data dir's keys/audit-signing-key)"


def _add_store_options(parser: argparse.ArgumentParser) -> None:
    add_data_dir_option(parser)
    parser.add_argument(
        "--store",
        default=os.environ.get(STORE_ENV),
        metavar="URL",
        help=f"a postgresql:// URL (or a SQLite file) instead of <data dir>/{STORE_FILE} "
        f"(default: ${STORE_ENV})",
    )
    parser.add_argument(
        "--schema", default=DEFAULT_SCHEMA, help=f"schema of a PostgreSQL store ({DEFAULT_SCHEMA})"
    )


def _add_key_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--public-key",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="PEM public key that signed checkpoints (repeat for several; default: the data "
        "dir's signing key)",
    )
    parser.add_argument("--signing-key", type=Path, metavar="FILE", help=_SIGNING_KEY_HELP)


def _add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object per record")


# The commands.


def run_tail(args: argparse.Namespace) -> int:
    """`bastion audit tail [-n N] [-f] [--json]`."""
    with _store(args) as store:
        newest = store.search(limit=max(args.n, 0), descending=True) if args.n > 0 else []
        records = list(reversed(newest))
        _print_records(records, args.json)
        if not args.follow:
            return EXIT_OK
        after = records[-1].seq if records else store.head().seq
        try:
            for record in _follow(store, after, FOLLOW_INTERVAL):
                _print_records([record], args.json)
        except KeyboardInterrupt:
            pass
    return EXIT_OK


def run_search(args: argparse.Namespace) -> int:
    """`bastion audit search [filters] [--json]`."""
    with _store(args) as store:
        found = store.search(
            user=args.user,
            target=args.target,
            decision=args.decision,
            rule=args.rule,
            table=args.table,
            kind=args.kind,
            since=args.since,
            until=args.until,
            limit=args.limit,
            descending=True,
        )
    _print_records(reversed(found), args.json)
    return EXIT_OK


def run_show(args: argparse.Namespace) -> int:
    """`bastion audit show SEQ`."""
    with _store(args) as store:
        record = store.get(args.seq)
    if record is None:
        print(f"no audit record with seq {args.seq}", file=sys.stderr)
        return EXIT_FAILURE
    print(json.dumps(json.loads(record.to_json()), indent=2, ensure_ascii=False))
    return EXIT_OK


def run_verify(args: argparse.Namespace) -> int:
    """`bastion audit verify [--public-key FILE] [--witness FILE]`."""
    keys = _public_keys(args)
    witnesses = [record for path in args.witness for record in read_export(path)]
    with _store(args) as store:
        report = verify_chain(store, keys, witnesses)
    if not keys and not report.ok:
        report.notes.append("no public key was found: pass --public-key FILE")
    print(report.summary(), file=sys.stdout if report.ok else sys.stderr)
    return EXIT_OK if report.ok else EXIT_FAILURE


def run_export(args: argparse.Namespace) -> int:
    """`bastion audit export [--output FILE] [--rotate-bytes N]`."""
    if args.rotate_bytes is not None and args.output is None:
        print("--rotate-bytes needs --output", file=sys.stderr)
        return EXIT_USAGE
    with _store(args) as store:
        records = store.iterate(from_seq=args.from_seq, to_seq=args.to_seq)
        if args.output is None:
            export_records(records, sys.stdout)
            return EXIT_OK
        output = RotatingFile(args.output, args.rotate_bytes)
        try:
            result = export_records(records, output)
        finally:
            output.close()
    print(f"exported {result.records} records to {args.output}", file=sys.stderr)
    return EXIT_OK


def run_prune(args: argparse.Namespace) -> int:
    """`bastion audit prune --keep-days N | --keep-records N`."""
    signer = _signer(args)
    with _store(args) as store:
        if not args.no_verify:
            keys = [*_public_keys(args), signer.public_key]
            report = verify_chain(store, keys)
            if not report.ok:
                print(f"not pruning, the record is broken: {report.problem}", file=sys.stderr)
                return EXIT_FAILURE
        result = prune(store, signer, keep_days=args.keep_days, keep_records=args.keep_records)
    if result.anchor is None:
        print("nothing to prune")
    else:
        print(
            f"pruned {result.pruned} records; the chain now starts at seq "
            f"{result.kept_from_seq} (anchor: seq {result.anchor.seq})"
        )
    return EXIT_OK


def run_public_key(args: argparse.Namespace) -> int:
    """`bastion audit public-key [--signing-key FILE]`."""
    signer = _signer(args)
    sys.stdout.write(public_key_pem(signer.public_key))
    print(f"key id: {signer.key_id}", file=sys.stderr)
    return EXIT_OK


# Helpers.


class _store:
    """Open the store the arguments name, and close it."""

    def __init__(self, args: argparse.Namespace) -> None:
        self._args = args
        self._store: AuditStore | None = None

    def __enter__(self) -> AuditStore:
        args = self._args
        if args.store:
            self._store = open_store(args.store, schema=args.schema, create=False)
        else:
            path = resolve_data_dir(args.data_dir) / STORE_FILE
            self._store = SQLiteAuditStore(path, create=False)
        return self._store

    def __exit__(self, *exc: object) -> None:
        if self._store is not None:
            self._store.close()


def _signer(args: argparse.Namespace) -> AuditSigner:
    if args.signing_key is not None:
        return file_signer(args.signing_key, create=False)
    return data_dir_signer(DataDir(resolve_data_dir(args.data_dir)))


def _public_keys(args: argparse.Namespace) -> list[Ed25519PublicKey]:
    keys = [load_public_key(path) for path in args.public_key]
    if args.signing_key is not None:
        keys.append(file_signer(args.signing_key, create=False).public_key)
    elif not keys:
        data_dir = DataDir(resolve_data_dir(args.data_dir))
        if data_dir_key_path(data_dir).exists():
            keys.append(data_dir_signer(data_dir).public_key)
    return keys


def _follow(store: AuditStore, after: int, interval: float) -> Iterator[AuditRecord]:
    """Records appended after seq `after`, polling every `interval` seconds, forever."""
    while True:
        for record in store.iterate(from_seq=after + 1):
            after = record.seq
            yield record
        sys.stdout.flush()
        _pause(interval)


def _pause(seconds: float) -> None:
    time.sleep(seconds)


def _print_records(records: Iterable[AuditRecord], as_json: bool) -> None:
    for record in records:
        print(record.to_json() if as_json else _describe(record))


def _describe(record: AuditRecord) -> str:
    """One line for people: seq, time, kind, then the payload's telling fields."""
    parts = [f"{record.seq:>8}", format_ts(record.ts), f"{record.kind:<10}"]
    payload = record.payload
    if record.kind == KIND_CHECKPOINT:
        parts.append(f"covers {payload.get('from_seq')}..{payload.get('to_seq')}")
        if "anchor" in payload:
            parts.append(f"anchor: chain starts at seq {payload['anchor'].get('seq')}")
    else:
        shown = [key for key in _SUMMARY_KEYS if key in payload]
        if not shown:
            shown = sorted(payload)[:4]
        parts.extend(f"{key}={_short(payload[key])}" for key in shown)
    return "  ".join(parts)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    if len(text) > _STATEMENT_WIDTH:
        text = text[: _STATEMENT_WIDTH - 3] + "..."
    return json.dumps(text, ensure_ascii=False) if " " in text else text


def _timestamp(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r}") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _guard(handler: _Handler) -> _Handler:
    """Report store, key and file errors as one line and exit status 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except BastionError as exc:
            print(exc.message, file=sys.stderr)
            if exc.hint:
                print(f"hint: {exc.hint}", file=sys.stderr)
            return EXIT_USAGE
        except (OSError, ValueError) as exc:
            print(str(exc), file=sys.stderr)
            return EXIT_USAGE

    return run

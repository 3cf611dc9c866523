"""Everything `bastion demo` prepares before serving: a throwaway PostgreSQL with the sample
shop, an upstream role whose password only Bastion knows, the demo identities, and the config.

Kept apart from the CLI so tests can build the same demo and drive it with real clients.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from bastion.config.loader import config_from_mapping
from bastion.config.model import BastionConfig
from bastion.datadir import DataDir
from bastion.demo.pgserver import ThrowawayPostgres
from bastion.demo.sample import SAMPLE_TABLES, SampleSummary, load_sample
from bastion.identity.records import IdentityKind, UserRecord
from bastion.identity.scram import make_verifier
from bastion.identity.users_file import UsersFile

DEMO_TARGET = "demo"
DEMO_DATABASE = "shop"
UPSTREAM_ROLE = "bastion_app"
READONLY_ROLE = "bastion_readonly"
DEMO_POLICY = Path(__file__).with_name("policy.yaml")


@dataclass(frozen=True, slots=True)
class DemoUser:
    name: str
    password: str
    groups: tuple[str, ...]
    kind: IdentityKind


DEMO_USERS = (
    DemoUser("alice", "alice", ("analysts",), IdentityKind.HUMAN),
    DemoUser("dana", "dana", ("dba",), IdentityKind.HUMAN),
    DemoUser("omar", "omar", ("dba",), IdentityKind.HUMAN),
    DemoUser("reporting-agent", "agent", ("reporting",), IdentityKind.AGENT),
)


@dataclass(frozen=True, slots=True)
class Demo:
    config: BastionConfig
    data_dir: DataDir
    sample: SampleSummary
    listen_host: str
    listen_port: int


def start_demo_server() -> ThrowawayPostgres:
    """A throwaway server that demands SCRAM passwords over TCP, like a real one would."""
    server = ThrowawayPostgres(auth="scram-sha-256", superuser_password=secrets.token_urlsafe(18))
    return server.start()


def prepare_demo(
    server: ThrowawayPostgres,
    data_dir: DataDir,
    listen_host: str,
    listen_port: int,
    admin: tuple[str, int] | None = None,
) -> Demo:
    sample = load_sample(server.admin_dsn(), DEMO_DATABASE)
    secret_file = data_dir.path / "demo-upstream.password"
    readonly_file = data_dir.path / "demo-readonly.password"
    for role, path, writer in (
        (UPSTREAM_ROLE, secret_file, True),
        (READONLY_ROLE, readonly_file, False),
    ):
        password = secrets.token_urlsafe(24)
        _create_upstream_role(server, role, password, writer=writer)
        _write_private(path, password)
    users = UsersFile(data_dir.users_file)
    for user in DEMO_USERS:
        record = UserRecord(
            name=user.name, groups=user.groups, kind=user.kind, scram=make_verifier(user.password)
        )
        users.add(record, replace=True)
    listeners: dict[str, object] = {
        "postgres": [{"host": listen_host, "port": listen_port, "tls": "auto"}]
    }
    if admin is not None:
        listeners["admin"] = {"host": admin[0], "port": admin[1]}
    config = config_from_mapping(
        {
            "listeners": listeners,
            "targets": [
                {
                    "name": DEMO_TARGET,
                    "host": server.host,
                    "port": server.port,
                    "database": DEMO_DATABASE,
                    "credentials": {
                        "default": {"user": UPSTREAM_ROLE, "password": f"file:{secret_file}"},
                        "readonly": {"user": READONLY_ROLE, "password": f"file:{readonly_file}"},
                    },
                    "tls": "disable",
                    "labels": {"environment": "production"},
                }
            ],
            "policy": str(DEMO_POLICY),
            "audit": {"enabled": True},
            "logging": {"level": "info", "format": "json"},
        },
        source="<demo>",
    )
    return Demo(config, data_dir, sample, listen_host, listen_port)


def _create_upstream_role(
    server: ThrowawayPostgres, name: str, password: str, *, writer: bool
) -> None:
    """An upstream role for Bastion; the database's own grants back up Bastion's decisions.

    The read-write role owns the sample tables, as an application's migration role would, so a
    dba's approved DROP TABLE can run."""
    server.create_role(name, password)
    privileges = sql.SQL("ALL" if writer else "SELECT")
    role = sql.Identifier(name)
    with psycopg.connect(server.admin_dsn(DEMO_DATABASE), autocommit=True) as conn:
        for table in SAMPLE_TABLES:
            statement = "ALTER TABLE {} OWNER TO {}" if writer else "GRANT {} ON TABLE {} TO {}"
            parts = (
                [sql.Identifier(table), role]
                if writer
                else [privileges, sql.Identifier(table), role]
            )
            conn.execute(sql.SQL(statement).format(*parts))
        if writer:
            conn.execute(sql.SQL("GRANT ALL ON SCHEMA public TO {}").format(role))
            conn.execute(
                sql.SQL("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {}").format(role)
            )


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")


def _bastion_command() -> str:
    """How to run this Bastion's command line from another terminal."""
    beside = Path(sys.executable).parent / "bastion"
    return str(beside) if beside.exists() and shutil.which("bastion") != str(beside) else "bastion"


def connection_lines(demo: Demo) -> str:
    host, port = demo.listen_host, demo.listen_port
    ca = demo.data_dir.tls_dir / "ca.crt"
    lines = [
        "",
        "Bastion demo is running. Connect as one of the demo identities:",
        "",
    ]
    for user in DEMO_USERS:
        lines.append(
            f"  PGPASSWORD={user.password} psql "
            f'"host={host} port={port} user={user.name} dbname={DEMO_TARGET}"'
            f"   # {user.kind.value}, groups: {', '.join(user.groups)}"
        )
    lines += [
        "",
        "  With certificate checks:",
        f'  PGPASSWORD=alice psql "host=localhost port={port} user=alice dbname={DEMO_TARGET} '
        f'sslmode=verify-full sslrootcert={ca}"',
        "",
        "Try: SELECT full_name, email, card_number FROM customers LIMIT 5;",
        "",
        "Approvals: as dana, run DROP TABLE payments; it waits for a second dba. Approve it as",
        "omar from another terminal (password omar):",
        f"  {_bastion_command()} login omar",
        f"  {_bastion_command()} approvals list",
        f"  {_bastion_command()} approvals approve ID",
        "",
        f"The upstream database is {DEMO_DATABASE} on a throwaway server "
        f"(port {demo.config.targets[0].port}); only Bastion knows its password.",
        *(
            [f"Admin API: http://{admin.host}:{admin.port}/healthz"]
            if (admin := demo.config.listeners.admin) is not None
            else []
        ),
        "Press Ctrl-C to stop; the throwaway server is removed.",
        "",
    ]
    return "\n".join(lines)

"""The systems under test: a throwaway PostgreSQL loaded for pgbench, pgbouncer, and Bastion.

This module starts and stops processes and knows how to reach them (`Endpoint`); it measures
nothing. PostgreSQL comes from `bastion.demo.pgserver.ThrowawayPostgres` (trust auth, private
directory). pgbouncer and Bastion get their own generated configuration in the run's working
directory; pgbouncer runs as the `postgres` account when we are root, since it refuses root.
Every client of the benchmark connects with TLS and GSS encryption off, so a direct connection,
pgbouncer and Bastion are compared like with like.
"""

from __future__ import annotations

import contextlib
import io
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import yaml
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bastion.demo.pgserver import ThrowawayPostgres, find_postgres_bin_dir
from bastion.demo.sample import luhn_check_digit
from bastion.identity.records import IdentityKind, UserRecord
from bastion.identity.scram import make_verifier
from bastion.identity.users_file import UsersFile

HOST = "127.0.0.1"
DATABASE = "bench"
# The identity pgbench presents to pgbouncer and to Bastion; both check it with SCRAM-SHA-256.
CLIENT_USER = "bench"
CLIENT_PASSWORD = "bench-only-password-1"
SERVER_ACCOUNT = "postgres"
PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
BASTION_PROFILES = ("passthrough", "governed", "masking")
WIDE_ROWS = 1000
START_TIMEOUT_SECONDS = 20.0


class StackError(RuntimeError):
    """A component of the benchmark could not be prepared or started."""


@dataclass(frozen=True)
class Endpoint:
    """Where a benchmark client connects, and which process (if any) proxies it."""

    name: str
    port: int
    user: str
    password: str | None
    dbname: str = DATABASE
    pid: int | None = None  # the proxy process; None for a direct connection

    def env(self) -> dict[str, str]:
        """libpq environment for pgbench and psql: no TLS, no GSS, no stray PG* settings."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        base |= {
            "PGHOST": HOST,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGDATABASE": self.dbname,
            "PGSSLMODE": "disable",
            "PGGSSENCMODE": "disable",
            "PGCONNECT_TIMEOUT": "10",
        }
        if self.password is not None:
            base["PGPASSWORD"] = self.password
        return base

    def conninfo(self) -> str:
        info = make_conninfo(
            "",
            host=HOST,
            port=self.port,
            user=self.user,
            dbname=self.dbname,
            sslmode="disable",
            gssencmode="disable",
            connect_timeout=10,
        )
        return info if self.password is None else make_conninfo(info, password=self.password)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StackError(f"{what} exited during start-up:\n{tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.2):
            return
        time.sleep(0.05)
    raise StackError(f"{what} did not start listening on port {port}:\n{tail(log)}")


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def server_account() -> pwd.struct_passwd | None:
    """The account that runs pgbouncer when we are root (it refuses to run as root)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_ACCOUNT)
    except KeyError as exc:
        raise StackError(f"running as root needs a {SERVER_ACCOUNT!r} account") from exc


# PostgreSQL.


def start_postgres(extra_settings: Mapping[str, str]) -> ThrowawayPostgres:
    return ThrowawayPostgres(auth="trust", extra_settings=extra_settings).start()


def postgres_version() -> str:
    binary = find_postgres_bin_dir() / "postgres"
    return subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()


def postmaster_pid(pg: ThrowawayPostgres) -> int:
    return int((pg.data_dir / "postmaster.pid").read_text().split()[0])


def direct_endpoint(pg: ThrowawayPostgres, dbname: str = DATABASE) -> Endpoint:
    return Endpoint("direct", pg.port, pg.superuser, None, dbname)


def load_database(pg: ThrowawayPostgres, scale: int) -> None:
    """Create the bench database, run `pgbench -i -s scale` and make the wide table."""
    with psycopg.connect(pg.admin_dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    direct = direct_endpoint(pg)
    result = subprocess.run(
        ["pgbench", "-i", "-q", "-s", str(scale)],
        env=direct.env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise StackError(f"pgbench -i failed:\n{result.stderr}")
    create_wide_table(pg.admin_dsn(DATABASE))


def wide_rows(count: int = WIDE_ROWS, seed: int = 11) -> list[tuple[Any, ...]]:
    """Deterministic rows: two sensitive columns, two free-text ones (a tenth hide a secret),
    an integer and a timestamp. All values are synthetic (example.com, test-style cards)."""
    rng = random.Random(seed)
    alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    words = [
        "order",
        "shipped",
        "late",
        "customer",
        "asked",
        "about",
        "refund",
        "invoice",
        "address",
        "changed",
    ]
    rows = []
    for i in range(1, count + 1):
        body = "4" + "".join(rng.choice("0123456789") for _ in range(14))
        card = body + luhn_check_digit(body)
        email = f"user{i:05d}.{rng.choice(words)}@example.com"
        note = " ".join(rng.choice(words) for _ in range(rng.randint(6, 14)))
        comment = " ".join(rng.choice(words) for _ in range(rng.randint(4, 10)))
        if i % 10 == 0:
            key = "sk_live_" + "".join(rng.choice(alnum) for _ in range(24))
            note = f"{note}; temporary API key {key} until Friday"
        if i % 10 == 5:
            comment = f"{comment}; cc {rng.choice(words)}{i}@example.org"
        created = f"2025-{1 + i % 12:02d}-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:00+00"
        rows.append((i, email, card, note, comment, created))
    return rows


def create_wide_table(conninfo: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE wide (id integer PRIMARY KEY, email text NOT NULL,"
            " card_number text NOT NULL, notes text, comment text, created_at timestamptz)"
        )
        with conn.cursor().copy(
            "COPY wide (id, email, card_number, notes, comment, created_at) FROM STDIN"
        ) as copy:
            for row in wide_rows():
                copy.write_row(row)
        conn.execute("VACUUM ANALYZE wide")


# pgbouncer.


@dataclass
class PgbouncerStatus:
    binary: Path | None
    version: str = ""
    reason: str = ""  # why it is unavailable


def find_pgbouncer(install: bool = True) -> PgbouncerStatus:
    """Find pgbouncer; as root, install Debian's package if it is missing."""
    binary = _pgbouncer_binary()
    if binary is None and install and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        command = ["apt-get", "install", "-y", "-q", "pgbouncer"]
        print("bench: pgbouncer is missing; installing it with apt-get", file=sys.stderr)
        if subprocess.run(command, env=env, capture_output=True, check=False).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
            subprocess.run(command, env=env, capture_output=True, check=False)
        binary = _pgbouncer_binary()
    if binary is None:
        reason = "pgbouncer is not installed"
        if os.geteuid() != 0:
            reason += " (install Debian's pgbouncer package, or run the benchmark as root)"
        return PgbouncerStatus(None, reason=reason)
    result = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=False)
    version = result.stdout.splitlines()[0].strip() if result.stdout else "unknown"
    return PgbouncerStatus(binary, version=version)


def _pgbouncer_binary() -> Path | None:
    found = shutil.which("pgbouncer")
    if found:
        return Path(found)
    for candidate in (Path("/usr/sbin/pgbouncer"), Path("/usr/local/sbin/pgbouncer")):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


@dataclass
class Pgbouncer:
    """pgbouncer in session pooling mode, checking clients with SCRAM-SHA-256."""

    binary: Path
    work_dir: Path
    upstream_port: int
    upstream_dbname: str = DATABASE
    pool_size: int = 40
    max_clients: int = 200
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.work_dir / "pgbouncer.log"

    def start(self) -> Pgbouncer:
        account = server_account()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        ini = self.work_dir / "pgbouncer.ini"
        userlist = self.work_dir / "userlist.txt"
        ini.write_text(
            "[databases]\n"
            f"{DATABASE} = host={HOST} port={self.upstream_port} dbname={self.upstream_dbname}"
            f" user={SERVER_ACCOUNT}\n"
            "[pgbouncer]\n"
            f"listen_addr = {HOST}\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = scram-sha-256\n"
            f"auth_file = {userlist}\n"
            "pool_mode = session\n"
            f"default_pool_size = {self.pool_size}\n"
            f"max_client_conn = {self.max_clients}\n"
            "log_connections = 0\n"
            "log_disconnections = 0\n"
            "ignore_startup_parameters = extra_float_digits\n"
        )
        # A SCRAM verifier, as Bastion stores it: with a plaintext password pgbouncer would
        # derive the salted key (4,096 PBKDF2 rounds) on every login.
        userlist.write_text(f'"{CLIENT_USER}" "{make_verifier(CLIENT_PASSWORD)}"\n')
        userlist.chmod(0o600)
        if account is not None:
            for path in (self.work_dir, ini, userlist):
                os.chown(path, account.pw_uid, account.pw_gid)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(self.binary), str(ini)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.work_dir,
                user=account.pw_uid if account else None,
                group=account.pw_gid if account else None,
                extra_groups=[] if account else None,
            )
        wait_for_port(self.port, self.process, self.log_path, "pgbouncer")
        return self

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def endpoint(self) -> Endpoint:
        return Endpoint("pgbouncer", self.port, CLIENT_USER, CLIENT_PASSWORD, pid=self.pid)


# Bastion.


def load_profile(name: str) -> dict[str, Any]:
    """The configuration fragment that makes a Bastion profile (bench/profiles/NAME.yaml)."""
    data = yaml.safe_load((PROFILES_DIR / f"{name}.yaml").read_text()) or {}
    if not isinstance(data, dict):
        raise StackError(f"{PROFILES_DIR / name}.yaml must hold a mapping")
    return data


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@dataclass
class BastionServer:
    """`bastion serve` in a subprocess, configured from a profile; its log goes to a file."""

    profile: str
    work_dir: Path
    upstream_port: int
    upstream_dbname: str = DATABASE
    overrides: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # e.g. PYTHONPATH for another source
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return f"bastion-{self.profile}"

    @property
    def log_path(self) -> Path:
        return self.work_dir / "bastion.log"

    def config(self) -> dict[str, Any]:
        base: dict[str, Any] = {
            # Client TLS off, like the direct connection and pgbouncer it is compared with.
            "listeners": {"postgres": [{"host": HOST, "port": self.port, "tls": "off"}]},
            "targets": [
                {
                    "name": DATABASE,
                    "host": HOST,
                    "port": self.upstream_port,
                    "database": self.upstream_dbname,
                    "tls": "disable",
                    "credentials": {"default": {"user": SERVER_ACCOUNT}},
                }
            ],
            "limits": {"max_client_connections": 5000},
        }
        return _merge(_merge(base, load_profile(self.profile)), self.overrides)

    def start(self) -> BastionServer:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        data_dir = self.work_dir / "data"
        data_dir.mkdir(mode=0o700, exist_ok=True)
        self.port = self.port or free_port()
        config_path = self.work_dir / "bastion.yaml"
        config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        UsersFile(data_dir / "users.yaml").add(
            UserRecord(
                name=CLIENT_USER,
                kind=IdentityKind.SERVICE,
                groups=("benchmark",),
                scram=make_verifier(CLIENT_PASSWORD),
            ),
            replace=True,
        )
        command = [sys.executable, "-m", "bastion.cli.main", "serve"]
        command += ["--config", str(config_path), "--data-dir", str(data_dir)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
            )
        wait_for_port(self.port, self.process, self.log_path, self.name)
        return self

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def endpoint(self) -> Endpoint:
        return Endpoint(self.name, self.port, CLIENT_USER, CLIENT_PASSWORD, pid=self.pid)

    def truncate_log(self) -> None:
        # Bastion's stderr was opened for appending, so it keeps writing at the new end.
        with self.log_path.open("r+b") as log:
            log.truncate(0)

    def statement_lines(self) -> int:
        """Audit lines for statements written since the last truncate_log()."""
        with self.log_path.open("rb") as log:
            return log.read().count(b'"msg": "statement"')


# Which Bastion is measured.

REPO = Path(__file__).resolve().parent.parent


def git(*args: str) -> str:
    result = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else ""


def export_source(ref: str, dest: Path) -> tuple[dict[str, str], str]:
    """Extract `src/` of a committed revision into dest; returns the environment that makes
    Python import Bastion from there, and a description of the revision."""
    sha = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    if not sha:
        raise StackError(f"{ref!r} is not a revision of this repository")
    archive = subprocess.run(
        ["git", "archive", "--format=tar", sha, "src"], cwd=REPO, capture_output=True, check=True
    )
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")
    _build_extensions(dest / "src")
    env = {"PYTHONPATH": str(dest / "src")}
    # PYTHONPATH comes before the editable install's path entry; make sure it does here.
    found = subprocess.run(
        [sys.executable, "-c", "import bastion; print(bastion.__file__)"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not found.startswith(str(dest)):
        raise StackError(f"Bastion was imported from {found}, not from the exported {ref}")
    return env, sha[:7] if sha.startswith(ref) else f"{sha[:7]} ({ref})"


_BUILD_IN_PLACE = """
import sys
from pathlib import Path
from setuptools import Extension, setup
root = Path(sys.argv[1])
modules = [
    Extension(".".join(c.relative_to(root).with_suffix("").parts), [str(c.relative_to(root))],
              extra_compile_args=["-O2"])
    for c in sorted(root.rglob("*.c"))
]
setup(name="bastion-exported", ext_modules=modules,
      script_args=["build_ext", "--inplace", "--build-temp", str(root / ".build")])
"""


def _build_extensions(src: Path) -> None:
    """Compile the C extensions of an exported revision next to their sources, as an install
    would (a revision without any has nothing to build). Without them Bastion would run on
    the slower Python twins and the numbers would not be that revision's."""
    if not any(src.rglob("*.c")):
        return
    result = subprocess.run(
        [sys.executable, "-c", _BUILD_IN_PLACE, str(src)],
        cwd=src,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise StackError(f"building the exported revision's C extensions failed:\n{result.stderr}")


def working_tree_description() -> str:
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--", "src"):
        commit += " plus uncommitted changes in src/"
    return commit

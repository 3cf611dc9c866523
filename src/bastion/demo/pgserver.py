"""A throwaway PostgreSQL server: initdb into a private directory, start, administer, remove.

This module owns finding the PostgreSQL server binaries and running a disposable cluster tuned
for speed rather than durability (no fsync, private socket directory, optional self-signed TLS).
`bastion demo` and the test suite use it. It must never touch a cluster it did not create: every
file it writes lives in a directory it made itself, and `stop()` removes only that directory.

PostgreSQL refuses to run as root, so when we are root the server tools run as the `postgres`
system account, which then owns the working directory.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import ipaddress
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Literal, Self, get_args

import psycopg
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bastion.errors import BastionError

AuthMethod = Literal["trust", "password", "md5", "scram-sha-256"]

DEBIAN_ROOT = Path("/usr/lib/postgresql")
INSTALL_COMMAND = "sudo apt-get install postgresql"
SERVER_ACCOUNT = "postgres"
START_TIMEOUT_SECONDS = 60

# Unix socket paths are limited to 108 bytes on Linux and 104 on macOS, terminator included.
_MAX_SOCKET_PATH = 103
_SETTING_NAME_RE = re.compile(r"^[a-z_][a-z0-9_.]*$")
_PORT_CLASH_MARKERS = ("could not bind", "Address already in use")


class PostgresNotFound(BastionError):
    """No PostgreSQL server binaries (initdb, pg_ctl) could be found on this machine."""


class PostgresStartFailed(BastionError):
    """The throwaway server could not be created or started; the message holds the log tail."""


def find_postgres_bin_dir() -> Path:
    """Return the directory holding `initdb`, `pg_ctl` and `postgres`.

    Looks on PATH first, then in Debian's versioned `/usr/lib/postgresql/<version>/bin` (highest
    version wins), then asks `pg_config --bindir`.
    """
    for candidate in _bin_dir_candidates():
        if _has_server_tools(candidate):
            return candidate
    raise PostgresNotFound(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH, under "
        f"{DEBIAN_ROOT}/<version>/bin or via pg_config. Install them with: {INSTALL_COMMAND}",
        hint=f"Run `{INSTALL_COMMAND}` (Debian/Ubuntu) or put PostgreSQL's bin directory on PATH.",
    )


def _bin_dir_candidates() -> Iterator[Path]:
    pg_ctl, initdb = shutil.which("pg_ctl"), shutil.which("initdb")
    if pg_ctl and initdb:
        # Resolving symlinks finds the real install, whose directory also holds `postgres`.
        yield Path(pg_ctl).resolve().parent
        yield Path(pg_ctl).parent
    if DEBIAN_ROOT.is_dir():
        versions = [p for p in DEBIAN_ROOT.iterdir() if _version_key(p.name) is not None]
        for version_dir in sorted(versions, key=lambda p: _version_key(p.name) or (), reverse=True):
            yield version_dir / "bin"
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            result = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            )
            yield Path(result.stdout.strip())


def _version_key(name: str) -> tuple[int, ...] | None:
    """Numeric sort key for a version directory name ("9.6" < "15"); None if not a version."""
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)*", name):
        return None
    return tuple(int(part) for part in name.split("."))


def _has_server_tools(bin_dir: Path) -> bool:
    return all(os.access(bin_dir / tool, os.X_OK) for tool in ("pg_ctl", "initdb"))


@dataclass(frozen=True)
class _Account:
    """The system account the server tools run as when we are root."""

    name: str
    uid: int
    gid: int
    groups: frozenset[int]


def _server_account() -> _Account | None:
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SERVER_ACCOUNT)
    except KeyError:
        raise PostgresStartFailed(
            f"PostgreSQL refuses to run as root and there is no {SERVER_ACCOUNT!r} system "
            "account to run it as.",
            hint=f"Run as an ordinary user, or create the account with `{INSTALL_COMMAND}`.",
        ) from None
    groups = frozenset(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return _Account(entry.pw_name, entry.pw_uid, entry.pw_gid, groups)


def _check_traversable(path: Path, account: _Account) -> None:
    """Fail early if the server account cannot reach `path` (e.g. a directory under /root)."""
    for directory in [path, *path.parents]:
        mode = directory.stat()
        if mode.st_uid == account.uid:
            needed = stat.S_IXUSR
        elif mode.st_gid in account.groups:
            needed = stat.S_IXGRP
        else:
            needed = stat.S_IXOTH
        if not mode.st_mode & needed:
            raise PostgresStartFailed(
                f"{directory} cannot be traversed by the {account.name!r} account that runs the "
                "server when Bastion runs as root.",
                hint="Use a base directory under /tmp (the default) or make its parents 0755.",
            )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _quote_setting(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


class ThrowawayPostgres:
    """A private PostgreSQL cluster that lives from `start()` (or `with`) until `stop()`.

    The server listens on 127.0.0.1 only, with `auth` deciding how TCP clients authenticate.
    The superuser can always connect over the private Unix socket without a password, which is
    how `admin_dsn()` and the role helpers administer it. With `ssl=True` a self-signed
    certificate for localhost/127.0.0.1 is generated and TCP clients must use TLS.

    `base_dir` is where the private working directory is created (default: the temp dir); the
    working directory holds the data directory, the socket, the log and the TLS files.
    """

    host = "127.0.0.1"
    superuser = SERVER_ACCOUNT

    def __init__(
        self,
        *,
        base_dir: Path | None = None,
        port: int | None = None,
        auth: AuthMethod = "trust",
        superuser_password: str | None = None,
        ssl: bool = False,
        extra_settings: Mapping[str, str] = MappingProxyType({}),
    ) -> None:
        if auth not in get_args(AuthMethod):
            raise ValueError(f"unsupported auth method {auth!r}")
        for name in extra_settings:
            if not _SETTING_NAME_RE.match(name):
                raise ValueError(f"invalid setting name {name!r}")
        self.auth: AuthMethod = auth
        self.superuser_password = superuser_password
        self.ssl = ssl
        self._base_dir = base_dir
        self._requested_port = port
        self._extra_settings = dict(extra_settings)
        self._port: int | None = port
        self._work_dir: Path | None = None
        self._bin_dir: Path | None = None
        self._account: _Account | None = None
        self._running = False

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return f"<ThrowawayPostgres {state} port={self._port} auth={self.auth} ssl={self.ssl}>"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- where things are ------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._running

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the server has no port until it is started")
        return self._port

    @property
    def work_dir(self) -> Path:
        if self._work_dir is None:
            raise RuntimeError("the server has no working directory until it is started")
        return self._work_dir

    @property
    def socket_dir(self) -> Path:
        return self.work_dir

    @property
    def data_dir(self) -> Path:
        return self.work_dir / "data"

    @property
    def log_file(self) -> Path:
        return self.work_dir / "server.log"

    @property
    def ssl_cert_file(self) -> Path:
        """The self-signed server certificate; clients can use it as `sslrootcert`."""
        return self.work_dir / "tls" / "server.crt"

    @property
    def _ssl_key_file(self) -> Path:
        return self.work_dir / "tls" / "server.key"

    def admin_dsn(self, dbname: str = "postgres") -> str:
        """Conninfo for the superuser over the private Unix socket (trusted, no password)."""
        return make_conninfo(
            "", host=str(self.socket_dir), port=self.port, user=self.superuser, dbname=dbname
        )

    def dsn(
        self,
        dbname: str = "postgres",
        user: str | None = None,
        password: str | None = None,
        **params: str,
    ) -> str:
        """Conninfo for a TCP client; defaults to the superuser and its password."""
        user = user or self.superuser
        if password is None and user == self.superuser:
            password = self.superuser_password
        conninfo = make_conninfo(
            "", host=self.host, port=self.port, user=user, dbname=dbname, **params
        )
        if password is not None:
            conninfo = make_conninfo(conninfo, password=password)
        return conninfo

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except (OSError, RuntimeError):
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- administration --------------------------------------------------------------------

    def create_role(
        self,
        name: str,
        password: str | None = None,
        *,
        login: bool = True,
        superuser: bool = False,
    ) -> None:
        """Create a role; the server hashes the password according to password_encryption."""
        query = sql.SQL("CREATE ROLE {name} WITH {login} {superuser}").format(
            name=sql.Identifier(name),
            login=sql.SQL("LOGIN" if login else "NOLOGIN"),
            superuser=sql.SQL("SUPERUSER" if superuser else "NOSUPERUSER"),
        )
        if password is not None:
            query += sql.SQL(" PASSWORD {}").format(sql.Literal(password))
        self._admin_execute(query)

    def create_database(self, name: str, *, owner: str | None = None) -> None:
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if owner is not None:
            query += sql.SQL(" OWNER {}").format(sql.Identifier(owner))
        self._admin_execute(query)

    def _admin_execute(self, query: sql.Composed) -> None:
        with psycopg.connect(self.admin_dsn(), autocommit=True) as conn:
            conn.execute(query)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        """Create the cluster and start it; raise PostgresStartFailed with the log on failure."""
        if self._running:
            return self
        self._bin_dir = find_postgres_bin_dir()
        self._account = _server_account()
        self._work_dir = self._make_work_dir()
        try:
            self._initdb()
            if self.ssl:
                self._write_tls_files()
            self._write_hba()
            self._start_on_some_port()
            # From here on the server must not outlive this process, even if stop() is skipped.
            atexit.register(self.stop)
            if self.auth == "md5" and self.superuser_password is not None:
                # initdb stored a SCRAM verifier; re-set it so md5 clients really use md5.
                self._admin_execute(
                    sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        sql.Identifier(self.superuser), sql.Literal(self.superuser_password)
                    )
                )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove the working directory it created."""
        atexit.unregister(self.stop)
        # A start that timed out may have left a postmaster behind without us knowing it runs.
        pid_file = self._work_dir / "data" / "postmaster.pid" if self._work_dir else None
        if self._running or (pid_file is not None and pid_file.exists()):
            stopped = self._pg_ctl("stop", "-m", "fast").returncode == 0
            if not stopped:
                self._pg_ctl("stop", "-m", "immediate")
            self._running = False
        if self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None
        self._port = self._requested_port

    def pause(self) -> None:
        """Stop the server but keep its data, as an outage would; resume() starts it again.
        The shutdown is clean (fast), so what the server acknowledged is still there."""
        if self._running:
            self._pg_ctl("stop", "-m", "fast")
            self._running = False

    def resume(self) -> None:
        """Start a paused server again, on the same port, with the same data."""
        if self._running or self._work_dir is None:
            return
        result = self._pg_ctl("start", "-l", str(self.log_file))
        if result.returncode != 0:
            raise PostgresStartFailed(
                f"PostgreSQL did not restart: {result.stderr.strip()}\n{self.log_tail()}"
            )
        self._running = True

    def _make_work_dir(self) -> Path:
        parent = self._base_dir or Path(tempfile.gettempdir())
        parent.mkdir(parents=True, exist_ok=True)
        work_dir = Path(tempfile.mkdtemp(prefix="bastion-pg-", dir=parent)).absolute()
        try:
            if self._account is not None:
                os.chown(work_dir, self._account.uid, self._account.gid)
                _check_traversable(work_dir, self._account)
            if len(str(work_dir / ".s.PGSQL.65535")) > _MAX_SOCKET_PATH:
                raise PostgresStartFailed(
                    f"{work_dir} is too long to hold a Unix socket.",
                    hint="Use a shorter base directory.",
                )
        except BaseException:
            shutil.rmtree(work_dir, ignore_errors=True)
            raise
        return work_dir

    def _tool(self, name: str) -> str:
        assert self._bin_dir is not None
        return str(self._bin_dir / name)

    def _run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        # PG* variables from the caller's environment would redirect the tools elsewhere.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        account = self._account
        return subprocess.run(
            args,
            capture_output=True,
            text=True,
            env=env,
            # The tools call getcwd(); the caller's cwd may be unreadable by the server account.
            cwd=self.work_dir,
            user=account.uid if account else None,
            group=account.gid if account else None,
            extra_groups=sorted(account.groups) if account else None,
            timeout=START_TIMEOUT_SECONDS + 30,
            check=False,
        )

    def _write_private(self, path: Path, content: bytes) -> None:
        """Write a file only the server account can read (PostgreSQL insists for keys)."""
        path.parent.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        if self._account is not None:
            os.chown(path.parent, self._account.uid, self._account.gid)
            os.chown(path, self._account.uid, self._account.gid)

    def _initdb(self) -> None:
        # The pg_hba.conf written later decides authentication, so initdb gets plain trust
        # (it refuses a password method without a superuser password).
        args = [self._tool("initdb"), f"--pgdata={self.data_dir}", f"--username={self.superuser}"]
        args += ["--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"]
        pwfile = self.work_dir / "superuser.pw"
        if self.superuser_password is not None:
            self._write_private(pwfile, self.superuser_password.encode() + b"\n")
            args.append(f"--pwfile={pwfile}")
        try:
            result = self._run(args)
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise PostgresStartFailed(
                f"initdb failed (exit {result.returncode}):\n{result.stderr.strip()}"
            )
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\ninclude 'bastion.conf'\n")

    def _write_tls_files(self) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(self.host))]
                ),
                critical=False,
            )
            # A CA flag lets clients trust this very certificate as their sslrootcert.
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self._write_private(self._ssl_key_file, key_pem)
        self._write_private(
            self.ssl_cert_file, certificate.public_bytes(serialization.Encoding.PEM)
        )
        self.ssl_cert_file.chmod(0o644)

    def _write_hba(self) -> None:
        method = self.auth
        tcp = "hostssl" if self.ssl else "host"
        lines = [
            "# Written by Bastion's throwaway server manager.",
            f"local   all   {self.superuser}   trust",
            f"local   all   all   {method}",
            f"{tcp}   all   all   {self.host}/32   {method}",
        ]
        (self.data_dir / "pg_hba.conf").write_text("\n".join(lines) + "\n")

    def _write_settings(self, port: int) -> None:
        settings = {
            "listen_addresses": self.host,
            "port": str(port),
            "unix_socket_directories": str(self.socket_dir),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "32MB",
            "password_encryption": "md5" if self.auth == "md5" else "scram-sha-256",
        }
        if self.ssl:
            settings |= {
                "ssl": "on",
                "ssl_cert_file": str(self.ssl_cert_file),
                "ssl_key_file": str(self._ssl_key_file),
            }
        settings |= self._extra_settings
        body = "".join(f"{name} = {_quote_setting(value)}\n" for name, value in settings.items())
        (self.data_dir / "bastion.conf").write_text(
            "# Written by Bastion's throwaway server manager.\n" + body
        )

    def _start_on_some_port(self) -> None:
        # A port found free can be taken before the server binds it; pick another then.
        attempts = 1 if self._requested_port is not None else 3
        for attempt in range(attempts):
            port = self._requested_port or _free_port()
            self._port = port
            self._write_settings(port)
            log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
            result = self._pg_ctl("start", "-l", str(self.log_file))
            if result.returncode == 0:
                self._running = True
                return
            new_log = self._log_since(log_offset)
            clash = any(marker in new_log for marker in _PORT_CLASH_MARKERS)
            if not clash or attempt == attempts - 1:
                raise PostgresStartFailed(
                    f"PostgreSQL did not start on port {port}: {result.stderr.strip()}\n"
                    f"Last lines of {self.log_file}:\n{self.log_tail()}"
                )

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_file.open("rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def _pg_ctl(self, mode: str, *options: str) -> subprocess.CompletedProcess[str]:
        timeout = f"--timeout={START_TIMEOUT_SECONDS}"
        pg_ctl = [self._tool("pg_ctl"), f"--pgdata={self.data_dir}", "--wait", "--silent", timeout]
        return self._run([*pg_ctl, *options, mode])

"""SQLiteConnections: one SQLite file in WAL mode, a connection per thread, numbered migrations.

Owns the plumbing an embedded store needs: the owner-only file, one connection per thread (the
event loop calls stores from worker threads, and WAL lets readers run beside the writer), the
pragmas, write transactions that take the lock first, and the `schema_version` table its
numbered migrations are recorded in. It knows no tables and builds no messages of its own: the
store names itself and supplies the factory for its own error class.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Literal, TypeVar

from bastion.store.threads import ThreadLocalConnections

_T = TypeVar("_T")
ErrorFactory = Callable[[str], Exception]
Synchronous = Literal["NORMAL", "FULL"]


def create_private_file(path: Path) -> None:
    """An empty file readable by its owner only, unless `path` exists; SQLite gives its -wal and
    -shm files the same mode. Raises OSError when the file can be neither created nor found."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


@contextlib.contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE: the write lock first, so what the transaction reads cannot go stale."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class SQLiteConnections:
    """Connections to the existing SQLite file at `path`, one per thread, in autocommit mode.

    `name` starts every error message ("audit store" gives "audit store /x.db is closed");
    `error` turns a message into the store's own exception. `synchronous` is NORMAL (a power loss
    may lose the last transactions, never corrupt the file) or FULL (a commit is on disk before
    it returns). `text_factory`, if given, decodes text columns.
    """

    def __init__(
        self,
        path: Path,
        *,
        name: str,
        error: ErrorFactory,
        synchronous: Synchronous,
        busy_timeout_ms: int,
        text_factory: Callable[[bytes], str] | None = None,
    ) -> None:
        self.path = path
        self._name = name
        self._error = error
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._text_factory = text_factory
        self._threads = ThreadLocalConnections[sqlite3.Connection](
            lambda: error(f"{name} {path} is closed")
        )

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        conn = self._threads.current()
        if conn is not None:
            return conn
        self._threads.check_open()
        conn = sqlite3.connect(
            self.path,
            isolation_level=None,
            check_same_thread=False,
            timeout=self._busy_timeout_ms / 1000,
        )
        try:
            if self._text_factory is not None:
                conn.text_factory = self._text_factory
            conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        except BaseException:
            conn.close()
            raise
        return self._threads.adopt(conn)

    def run(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        """`operation` on this thread's connection; SQLite errors become the store's error."""
        try:
            return operation(self.connection())
        except sqlite3.Error as exc:
            raise self._error(f"{self._name} {self.path}: {exc}") from exc

    def read(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        """`operation` in a deferred read transaction: several queries see one snapshot."""

        def read(conn: sqlite3.Connection) -> _T:
            conn.execute("BEGIN")
            try:
                return operation(conn)
            finally:
                conn.execute("COMMIT")

        return self.run(read)

    def migrate(self, migrations: Sequence[Sequence[str]], *, too_new: ErrorFactory) -> None:
        """Bring the schema to version len(migrations); entry i upgrades version i to i + 1.

        A file at a newer version is refused with `too_new(message)`. On any failure the
        connections are closed, since the store that is opening will not exist.
        """
        latest = len(migrations)

        def upgrade(conn: sqlite3.Connection) -> None:
            with write_transaction(conn):
                conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
                version = int(row[0] or 0)
                if version > latest:
                    raise too_new(
                        f"{self._name} {self.path} has schema version {version}; this Bastion "
                        f"knows versions up to {latest}"
                    )
                for target in range(version, latest):
                    for statement in migrations[target]:
                        conn.execute(statement)
                    conn.execute("INSERT INTO schema_version (version) VALUES (?)", (target + 1,))

        try:
            self.run(upgrade)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close every thread's connection; later calls fail with "... is closed"."""
        self._threads.close()

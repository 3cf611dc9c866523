"""ThreadLocalConnections: one database connection per thread, all of them closed together.

Owns the bookkeeping the SQLite and PostgreSQL helpers share: which connection belongs to the
calling thread, the list of every connection handed out (so `close()` reaches connections made
by other threads), dropping a broken one, and refusing new ones once closed. It knows no
driver: opening and configuring a connection is the caller's job.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar


class Closable(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=Closable)


class ThreadLocalConnections(Generic[C]):
    """Connections by thread; `closed_error()` is raised for any use after `close()`."""

    def __init__(self, closed_error: Callable[[], Exception]) -> None:
        self._closed_error = closed_error
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[C] = []
        self._closed = False

    def current(self) -> C | None:
        """The calling thread's connection, if it has one."""
        conn: C | None = getattr(self._local, "conn", None)
        return conn

    def check_open(self) -> None:
        """Raise `closed_error()` once `close()` was called (before opening a connection)."""
        with self._lock:
            if self._closed:
                raise self._closed_error()

    def adopt(self, conn: C) -> C:
        """Make `conn` the calling thread's connection; close it and raise if closed meanwhile."""
        with self._lock:
            if not self._closed:
                self._connections.append(conn)
                self._local.conn = conn
                return conn
        conn.close()
        raise self._closed_error()

    def discard(self, conn: C) -> None:
        """Forget and close `conn` (broken): the thread's next call opens a new one."""
        if self.current() is conn:
            self._local.conn = None
        with self._lock:
            if conn in self._connections:
                self._connections.remove(conn)
        conn.close()

    def close(self) -> None:
        """Close every connection, whichever thread opened it; refuse new ones from now on."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()

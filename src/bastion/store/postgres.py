"""PostgresConnections: a store's schema in a PostgreSQL database, one connection per thread.

Owns the plumbing a PostgreSQL store needs (psycopg 3): checking the connection string and the
schema name, one autocommit connection per thread (a broken one is dropped and replaced on next
use, so the store recovers by itself when the server comes back), wrapping driver errors into
the store's own error, and numbered migrations recorded in `<schema>.schema_version`, run under
an advisory lock so instances starting together do not race. Connection strings are never
logged, repr'd or put into errors: they may hold passwords; messages name host and database.
It knows no tables: the store names itself and supplies the factory for its own error class.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.sql import SQL, Composed, Identifier

from bastion.store.threads import ThreadLocalConnections

_T = TypeVar("_T")
ErrorFactory = Callable[[str], Exception]
DEFAULT_CONNECT_TIMEOUT = 5
SCHEMA_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresConnections:
    """Connections to the database `conninfo` names, for a store living in `schema`.

    `name` starts every error message ("audit store" gives "audit store db1/bastion: ...");
    `schema_label` starts the schema's ("audit" gives "audit schema names are ..."); `error`
    turns a message into the store's own exception. `connect_timeout` (seconds) applies unless
    `conninfo` sets one. With `summarize_outages`, an OperationalError (server gone, connection
    lost, statement cancelled) always drops the connection and is reported by class and SQLSTATE
    only, without the server's text.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str,
        schema_label: str,
        name: str,
        error: ErrorFactory,
        connect_timeout: int = DEFAULT_CONNECT_TIMEOUT,
        summarize_outages: bool = False,
    ) -> None:
        if not SCHEMA_NAME_RE.match(schema):
            raise ValueError(f"{schema_label} schema names are lowercase letters, digits and '_'")
        try:
            params = conninfo_to_dict(conninfo)
        except psycopg.ProgrammingError:
            # libpq quotes the bad part of the string, which may be the password.
            raise error(f"the {name}'s connection string is invalid") from None
        if "connect_timeout" not in params:
            conninfo = make_conninfo(conninfo, connect_timeout=connect_timeout)
        self._conninfo = conninfo
        # Host and database: all of the connection string that errors and reprs may show.
        self.where = f"{params.get('host', 'localhost')}/{params.get('dbname', '')}"
        self.schema = schema
        self._schema_label = schema_label
        self._ident = Identifier(schema)
        self._name = name
        self._error = error
        self._summarize_outages = summarize_outages
        self._threads = ThreadLocalConnections[psycopg.Connection[Any]](
            lambda: error(f"{name} {self.where} is closed")
        )

    def sql(self, text: str) -> Composed:
        """`text` with {schema} replaced by the quoted schema name; other braces are doubled."""
        return SQL(text).format(schema=self._ident)

    def connection(self) -> psycopg.Connection[Any]:
        """This thread's connection, (re)opened when there is none or it was closed."""
        conn = self._threads.current()
        if conn is not None and not conn.closed:
            return conn
        self._threads.check_open()
        return self._threads.adopt(psycopg.connect(self._conninfo, autocommit=True))

    def run(self, operation: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        """`operation` on this thread's connection; driver errors become the store's error."""
        conn: psycopg.Connection[Any] | None = None
        try:
            conn = self.connection()
            return operation(conn)
        except psycopg.Error as exc:
            outage = self._summarize_outages and isinstance(exc, psycopg.OperationalError)
            if conn is not None and (outage or conn.broken or conn.closed):
                self._threads.discard(conn)
            if outage:
                code = f", SQLSTATE {exc.sqlstate}" if exc.sqlstate else ""
                raise self._error(
                    f"{self._name} {self.where} is unreachable or failed "
                    f"({type(exc).__name__}{code})"
                ) from exc
            raise self._error(
                f"{self._name} {self.where}: {type(exc).__name__}: {first_line(exc)}"
            ) from exc

    def migrate(
        self, migrations: Sequence[Sequence[str]], *, lock_key: str, too_new: ErrorFactory
    ) -> None:
        """Bring the schema to version len(migrations); entry i upgrades version i to i + 1.

        Statements may use {schema}. `lock_key` names the advisory lock; every release must use
        the same key for the same schema. A schema at a newer version is refused with
        `too_new(message)`. On any failure the connections are closed, since the store that is
        opening will not exist.
        """
        latest = len(migrations)

        def upgrade(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (lock_key,))
                conn.execute(self.sql("CREATE SCHEMA IF NOT EXISTS {schema}"))
                conn.execute(
                    self.sql(
                        "CREATE TABLE IF NOT EXISTS {schema}.schema_version "
                        "(version integer NOT NULL)"
                    )
                )
                row = conn.execute(
                    self.sql("SELECT coalesce(max(version), 0) FROM {schema}.schema_version")
                ).fetchone()
                version = int(row[0]) if row else 0
                if version > latest:
                    raise too_new(
                        f"{self._schema_label} schema {self.schema} has version {version}; "
                        f"this Bastion knows versions up to {latest}"
                    )
                for target in range(version, latest):
                    for statement in migrations[target]:
                        conn.execute(self.sql(statement))
                    conn.execute(
                        self.sql("INSERT INTO {schema}.schema_version (version) VALUES (%s)"),
                        (target + 1,),
                    )

        try:
            self.run(upgrade)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close every thread's connection; later calls fail with "... is closed"."""
        self._threads.close()


def first_line(exc: BaseException) -> str:
    """The first line of an error's text: the server's message without its detail lines."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""

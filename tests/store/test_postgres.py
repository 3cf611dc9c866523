"""PostgresConnections against the real PostgreSQL: conninfo, errors, recovery, migrations."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from bastion.store.postgres import PostgresConnections

UNREACHABLE = "host=127.0.0.1 port=1 user=u password=hunter2 dbname=d connect_timeout=1"
V1 = ("CREATE TABLE {schema}.items (id bigserial PRIMARY KEY, name text NOT NULL)",)
V2 = ("ALTER TABLE {schema}.items ADD COLUMN tags text[] NOT NULL DEFAULT '{{}}'",)


class StoreError(Exception):
    """Stands for a store's own error class."""


Opener = Callable[..., PostgresConnections]


@pytest.fixture
def open_db(store_pg_dsn: str, pg_schema: str) -> Iterator[Opener]:
    """Opens helpers on the scratch database and this test's schema; all closed at the end."""
    opened: list[PostgresConnections] = []

    def open_db(conninfo: str = store_pg_dsn, **kwargs: Any) -> PostgresConnections:
        options: dict[str, Any] = {
            "schema": pg_schema,
            "schema_label": "test",
            "name": "test store",
            "error": StoreError,
        }
        db = PostgresConnections(conninfo, **(options | kwargs))
        opened.append(db)
        return db

    yield open_db
    for db in opened:
        db.close()


def backend_pid(db: PostgresConnections) -> int:
    return db.connection().info.backend_pid


def terminate(dsn: str, pid: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_schema_names_are_checked_before_anything_else() -> None:
    with pytest.raises(ValueError, match=r"^test schema names are lowercase letters"):
        PostgresConnections(
            "not a conninfo",
            schema='x"; DROP TABLE y; --',
            schema_label="test",
            name="test store",
            error=StoreError,
        )


def test_a_malformed_connection_string_is_not_echoed(open_db: Opener) -> None:
    with pytest.raises(StoreError) as raised:
        open_db("host=x password=hunter2 oops")
    assert str(raised.value) == "the test store's connection string is invalid"
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_an_unreachable_server_is_named_by_host_and_database_only(open_db: Opener) -> None:
    db = open_db(UNREACHABLE)
    assert db.where == "127.0.0.1/d"
    with pytest.raises(StoreError) as raised:
        db.run(lambda conn: conn.execute("SELECT 1"))
    assert str(raised.value).startswith("test store 127.0.0.1/d: OperationalError: ")
    assert "hunter2" not in str(raised.value)

    summarized = open_db(UNREACHABLE, summarize_outages=True)
    with pytest.raises(StoreError) as raised:
        summarized.run(lambda conn: conn.execute("SELECT 1"))
    assert str(raised.value) == "test store 127.0.0.1/d is unreachable or failed (OperationalError)"


def test_the_connect_timeout_is_added_unless_the_string_sets_one(
    open_db: Opener, store_pg_dsn: str
) -> None:
    def timeout(db: PostgresConnections) -> str:
        return db.connection().info.get_parameters()["connect_timeout"]

    assert timeout(open_db(connect_timeout=7)) == "7"
    assert timeout(open_db(f"{store_pg_dsn} connect_timeout=9", connect_timeout=7)) == "9"


def test_connections_are_per_thread_autocommit_and_closed_together(open_db: Opener) -> None:
    db = open_db()
    mine = db.connection()
    assert db.connection() is mine and mine.autocommit
    theirs: list[psycopg.Connection[Any]] = []
    worker = threading.Thread(target=lambda: theirs.append(db.connection()))
    worker.start()
    worker.join()
    assert theirs and theirs[0] is not mine

    db.close()
    assert mine.closed and theirs[0].closed
    where = db.where
    with pytest.raises(StoreError, match=f"^test store {where} is closed$"):
        db.run(lambda conn: conn.execute("SELECT 1"))


def test_server_errors_keep_their_first_line_and_the_connection(open_db: Opener) -> None:
    db = open_db()
    pid = backend_pid(db)
    with pytest.raises(StoreError) as raised:
        db.run(lambda conn: conn.execute("SELECT 1/0"))
    assert str(raised.value) == f"test store {db.where}: DivisionByZero: division by zero"
    assert isinstance(raised.value.__cause__, psycopg.errors.DivisionByZero)
    assert backend_pid(db) == pid


def test_a_broken_connection_is_replaced_on_next_use(open_db: Opener, store_pg_dsn: str) -> None:
    db = open_db()
    pid = backend_pid(db)
    terminate(store_pg_dsn, pid)
    with pytest.raises(StoreError, match=f"^test store {db.where}: "):
        db.run(lambda conn: conn.execute("SELECT 1"))
    assert db.run(lambda conn: conn.execute("SELECT 1").fetchone()) == (1,)
    assert backend_pid(db) != pid


def test_summarized_outages_drop_the_connection_and_hide_the_server_text(
    open_db: Opener,
) -> None:
    def cancelled(conn: psycopg.Connection[Any]) -> None:
        conn.execute("SET statement_timeout = '10ms'")
        conn.execute("SELECT pg_sleep(1)")

    plain = open_db()
    pid = backend_pid(plain)
    with pytest.raises(StoreError, match="QueryCanceled: canceling statement"):
        plain.run(cancelled)
    assert backend_pid(plain) == pid  # the connection still works, so it is kept

    summarized = open_db(summarize_outages=True)
    pid = backend_pid(summarized)
    with pytest.raises(StoreError) as raised:
        summarized.run(cancelled)
    assert str(raised.value) == (
        f"test store {summarized.where} is unreachable or failed (QueryCanceled, SQLSTATE 57014)"
    )
    assert backend_pid(summarized) != pid


def test_sql_quotes_the_schema(open_db: Opener, pg_schema: str) -> None:
    db = open_db()
    text = db.sql("SELECT '{{}}' FROM {schema}.items").as_string(db.connection())
    assert text == f"SELECT '{{}}' FROM \"{pg_schema}\".items"


def test_migrations_run_once_and_upgrade_an_older_schema(
    open_db: Opener, store_pg_dsn: str, pg_schema: str
) -> None:
    first = open_db()
    first.migrate([V1], lock_key=f"test:{pg_schema}", too_new=StoreError)
    first.run(
        lambda conn: conn.execute(first.sql("INSERT INTO {schema}.items (name) VALUES ('a')"))
    )
    open_db().migrate([V1], lock_key=f"test:{pg_schema}", too_new=StoreError)
    upgraded = open_db()
    upgraded.migrate([V1, V2], lock_key=f"test:{pg_schema}", too_new=StoreError)
    with psycopg.connect(store_pg_dsn) as conn:
        assert conn.execute(f"SELECT version FROM {pg_schema}.schema_version").fetchall() == [
            (1,),
            (2,),
        ]
        assert conn.execute(f"SELECT name, tags FROM {pg_schema}.items").fetchall() == [("a", [])]


def test_a_newer_schema_is_refused_and_the_helper_closed(open_db: Opener, pg_schema: str) -> None:
    open_db().migrate([V1, V2], lock_key=f"test:{pg_schema}", too_new=StoreError)
    older = open_db()
    with pytest.raises(StoreError) as raised:
        older.migrate(
            [V1],
            lock_key=f"test:{pg_schema}",
            too_new=lambda message: StoreError(f"{message} (upgrade)"),
        )
    assert str(raised.value) == (
        f"test schema {pg_schema} has version 2; this Bastion knows versions up to 1 (upgrade)"
    )
    with pytest.raises(StoreError, match=r"is closed$"):
        older.run(lambda conn: conn.execute("SELECT 1"))


def test_instances_migrating_together_migrate_once(
    open_db: Opener, store_pg_dsn: str, pg_schema: str
) -> None:
    helpers = [open_db() for _ in range(5)]
    start = threading.Barrier(len(helpers))
    failures: list[BaseException] = []

    def migrate(db: PostgresConnections) -> None:
        start.wait()
        try:
            db.migrate([V1, V2], lock_key=f"test:{pg_schema}", too_new=StoreError)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=migrate, args=(db,)) for db in helpers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    with psycopg.connect(store_pg_dsn) as conn:
        rows = conn.execute(f"SELECT version FROM {pg_schema}.schema_version ORDER BY 1")
        assert rows.fetchall() == [(1,), (2,)]

"""SQLiteConnections against real SQLite files: privacy, threads, transactions, migrations."""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bastion.store.sqlite import (
    SQLiteConnections,
    Synchronous,
    create_private_file,
    write_transaction,
)


class StoreError(Exception):
    """Stands for a store's own error class."""


V1 = ("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)",)
V2 = ("ALTER TABLE items ADD COLUMN note TEXT",)

Opener = Callable[..., SQLiteConnections]


@pytest.fixture
def open_db(tmp_path: Path) -> Iterator[Opener]:
    """Opens helpers on files in tmp_path (default `db.sqlite`); all are closed at the end."""
    opened: list[SQLiteConnections] = []

    def open_db(
        name: str = "db.sqlite", synchronous: Synchronous = "FULL", **kwargs: object
    ) -> SQLiteConnections:
        path = tmp_path / name
        create_private_file(path)
        db = SQLiteConnections(
            path,
            name="test store",
            error=StoreError,
            synchronous=synchronous,
            busy_timeout_ms=200,
            **kwargs,  # type: ignore[arg-type]
        )
        opened.append(db)
        return db

    yield open_db
    for db in opened:
        db.close()


def catch(action: Callable[[], object]) -> BaseException:
    try:
        action()
    except BaseException as error:
        return error
    raise AssertionError("no error raised")


def versions(path: Path) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        return [int(row[0]) for row in conn.execute("SELECT version FROM schema_version")]
    finally:
        conn.close()


def test_a_new_file_is_private_and_an_existing_one_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    create_private_file(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    path.write_bytes(b"kept")
    path.chmod(0o640)
    create_private_file(path)
    assert path.read_bytes() == b"kept"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
    with pytest.raises(FileNotFoundError):
        create_private_file(tmp_path / "missing-dir" / "state.db")


def test_migrations_run_once_and_upgrade_an_older_file(open_db: Opener) -> None:
    first = open_db()
    first.migrate([V1], too_new=StoreError)
    first.run(lambda conn: conn.execute("INSERT INTO items (name) VALUES ('a')"))
    first.close()
    assert versions(first.path) == [1]

    again = open_db()
    again.migrate([V1], too_new=StoreError)  # nothing to do: CREATE TABLE would fail
    again.close()
    upgraded = open_db()
    upgraded.migrate([V1, V2], too_new=StoreError)
    assert versions(upgraded.path) == [1, 2]
    row = upgraded.run(lambda conn: conn.execute("SELECT name, note FROM items").fetchone())
    assert row == ("a", None)


def test_a_newer_file_is_refused_and_the_helper_closed(open_db: Opener) -> None:
    open_db().migrate([V1, V2], too_new=StoreError)
    older = open_db()

    def too_new(message: str) -> Exception:
        return StoreError(f"{message} (upgrade)")

    with pytest.raises(StoreError) as raised:
        older.migrate([V1], too_new=too_new)
    assert str(raised.value) == (
        f"test store {older.path} has schema version 2; this Bastion knows versions up to 1 "
        "(upgrade)"
    )
    with pytest.raises(StoreError, match=r"closed"):
        older.run(lambda conn: conn.execute("SELECT 1"))


def test_a_failed_migration_leaves_no_trace(open_db: Opener) -> None:
    db = open_db()
    with pytest.raises(StoreError, match=r'^test store .*: near "NOT"'):
        db.migrate([(*V1, "NOT SQL")], too_new=StoreError)
    conn = sqlite3.connect(db.path)
    try:
        tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    finally:
        conn.close()
    assert tables == []


@pytest.mark.parametrize(("synchronous", "level"), [("NORMAL", 1), ("FULL", 2)])
def test_connections_are_wal_with_the_chosen_pragmas(
    open_db: Opener, synchronous: Synchronous, level: int
) -> None:
    db = open_db(synchronous=synchronous)
    conn = db.connection()
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert conn.execute("PRAGMA synchronous").fetchone() == (level,)
    assert conn.execute("PRAGMA busy_timeout").fetchone() == (200,)
    assert conn.in_transaction is False  # autocommit: transactions are explicit


def test_each_thread_gets_its_own_connection_and_close_reaches_all(open_db: Opener) -> None:
    db = open_db()
    mine = db.connection()
    assert db.connection() is mine
    theirs: list[sqlite3.Connection] = []
    worker = threading.Thread(target=lambda: theirs.append(db.connection()))
    worker.start()
    worker.join()
    assert theirs and theirs[0] is not mine

    db.close()
    for conn in (mine, theirs[0]):
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            conn.execute("SELECT 1")
    with pytest.raises(StoreError, match=r"closed"):  # this thread's connection is closed
        db.run(lambda conn: conn.execute("SELECT 1"))
    refused: list[BaseException] = []
    late = threading.Thread(target=lambda: refused.append(catch(lambda: db.connection())))
    late.start()
    late.join()
    assert [str(error) for error in refused] == [f"test store {db.path} is closed"]


def test_sqlite_errors_become_the_store_error(open_db: Opener) -> None:
    db = open_db()
    with pytest.raises(StoreError) as raised:
        db.run(lambda conn: conn.execute("SELECT * FROM nowhere"))
    assert str(raised.value) == f"test store {db.path}: no such table: nowhere"
    assert isinstance(raised.value.__cause__, sqlite3.OperationalError)


def test_a_write_transaction_commits_or_rolls_back_and_holds_the_write_lock(
    open_db: Opener,
) -> None:
    db = open_db()
    db.migrate([V1], too_new=StoreError)
    other = sqlite3.connect(db.path, isolation_level=None, timeout=0)
    try:
        with write_transaction(db.connection()):
            db.connection().execute("INSERT INTO items (name) VALUES ('kept')")
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        with pytest.raises(RuntimeError), write_transaction(db.connection()):
            db.connection().execute("INSERT INTO items (name) VALUES ('dropped')")
            raise RuntimeError("abort")
        assert db.connection().in_transaction is False
        assert other.execute("SELECT name FROM items").fetchall() == [("kept",)]
    finally:
        other.close()


def test_read_sees_one_snapshot(open_db: Opener) -> None:
    db = open_db()
    db.migrate([V1], too_new=StoreError)
    writer = sqlite3.connect(db.path, isolation_level=None)

    def read(conn: sqlite3.Connection) -> tuple[int, int]:
        before = conn.execute("SELECT count(*) FROM items").fetchone()[0]
        writer.execute("INSERT INTO items (name) VALUES ('new')")  # commits beside the reader
        after = conn.execute("SELECT count(*) FROM items").fetchone()[0]
        return int(before), int(after)

    try:
        assert db.read(read) == (0, 0)
        assert db.read(lambda conn: conn.execute("SELECT count(*) FROM items").fetchone()) == (1,)
        assert db.connection().in_transaction is False
    finally:
        writer.close()


def test_the_text_factory_decodes_text_columns(open_db: Opener) -> None:
    db = open_db(text_factory=lambda data: data.decode("utf-8", "surrogateescape"))
    value = db.run(lambda conn: conn.execute("SELECT CAST(x'ff41' AS TEXT)").fetchone()[0])
    assert value == "\udcffA"

"""Guardrails and evasions (SECURITY.md items 7-13) tried end to end through psql and psycopg,
simple and extended protocol, against a real server: nothing forbidden runs, checked on the
server's own state, and client and server agree on the transaction afterwards."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from bastion.demo.sample import SampleSummary
from support.bastion import BastionProcess, running_bastion
from support.servers import PostgresEndpoint

from .conftest import shop_target, upstream_env

POLICY = """\
version: 1
default_effect: deny
guardrails:
  enabled: auto
rules:
  - id: analysts-everything
    description: alice may do anything the guardrails do not stop
    match: {groups: [analysts]}
    effect: allow
"""


@pytest.fixture(scope="module")
def guarded(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_endpoint: PostgresEndpoint,
    shop_db: tuple[str, SampleSummary],
) -> Iterator[BastionProcess]:
    workdir: Path = tmp_path_factory.mktemp("guarded")
    policy = workdir / "policy.yaml"
    policy.write_text(POLICY)
    target = shop_target(postgres_endpoint, shop_db[0], labels={"environment": "production"})
    with running_bastion(
        workdir, [target], extra={"policy": str(policy)}, env=upstream_env(postgres_endpoint)
    ) as proc:
        yield proc


@pytest.fixture
def victim(direct_dsn: str) -> Iterator[str]:
    """A table the attacks try to destroy, made fresh for each test."""
    name = "victim"
    with psycopg.connect(direct_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS victim, victim_log")
        conn.execute("CREATE TABLE victim (id int PRIMARY KEY, secret text)")
        conn.execute("INSERT INTO victim VALUES (1, 'one'), (2, 'two')")
        conn.execute("CREATE TABLE victim_log (note text)")
    yield name
    with psycopg.connect(direct_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS victim, victim_log")


def _intact(direct_dsn: str) -> bool:
    with psycopg.connect(direct_dsn) as conn:
        row = conn.execute("SELECT count(*) FROM victim").fetchone()
        return row == (2,)


def _log_rows(direct_dsn: str) -> int:
    with psycopg.connect(direct_dsn) as conn:
        row = conn.execute("SELECT count(*) FROM victim_log").fetchone()
        assert row is not None
        return int(row[0])


def _psql(dsn: str, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["psql", dsn, "-X", "-v", "ON_ERROR_STOP=1", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
    )


DESTRUCTIVE = [
    "DROP TABLE victim",
    "SELECT 1; DROP TABLE victim",
    "INSERT INTO victim_log VALUES ('before'); DROP TABLE victim",
    "/* harmless */ DROP TABLE victim",
    "-- a comment\nDROP TABLE victim",
    'DROP TABLE "victim"',
    'DROP TABLE public."victim"',
    'DROP TABLE U&"\\0076ictim"',
    "drop table VICTIM",
    "SET search_path = pg_catalog, public; DROP TABLE victim",
    "TRUNCATE victim",
    "DELETE FROM victim",
    "DELETE FROM victim WHERE 1 = 1",
    "UPDATE victim SET secret = 'gone' WHERE true",
    "WITH d AS (DELETE FROM victim RETURNING *) SELECT count(*) FROM d",
    "ALTER TABLE victim DROP COLUMN secret",
    "DO $$ BEGIN EXECUTE 'DROP TABLE victim'; END $$",
    "DO $$ BEGIN DROP TABLE victim; END $$",
    "PREPARE wipe AS DELETE FROM victim",
    "EXPLAIN ANALYZE DELETE FROM victim",
    "CREATE FUNCTION wipe() RETURNS void LANGUAGE sql SECURITY DEFINER AS 'DELETE FROM victim'",
    "SELEC * FROM victim; DROP TABLE victim",
]

SERVER_ESCAPES = [
    "COPY victim TO PROGRAM 'cat > /tmp/bastion-leak'",
    "COPY victim FROM '/etc/passwd'",
    "COPY victim TO '/tmp/bastion-leak.csv'",
    "SELECT pg_read_file('/etc/passwd')",
    "SELECT * FROM (SELECT pg_read_file('/etc/passwd')) s",
    "SELECT pg_ls_dir('.')",
    "SELECT lo_import('/etc/passwd')",
    "SELECT dblink_exec('dbname=postgres', 'DROP TABLE victim')",
    "CREATE SERVER evil FOREIGN DATA WRAPPER postgres_fdw",
    "ALTER SYSTEM SET work_mem = '1MB'",
    "SET ROLE postgres",
    "SET SESSION AUTHORIZATION postgres",
    "SELECT set_config('role', 'postgres', false)",
    "LOAD 'auto_explain'",
    "GRANT ALL ON victim TO PUBLIC",
    "CREATE ROLE intruder SUPERUSER",
]


@pytest.mark.parametrize("statement", DESTRUCTIVE + SERVER_ESCAPES)
def test_psql_simple_protocol_cannot_run_it(
    guarded: BastionProcess, victim: str, direct_dsn: str, statement: str
) -> None:
    result = _psql(guarded.dsn(), statement)
    assert result.returncode != 0
    assert "bastion: " in result.stderr, result.stderr
    assert _intact(direct_dsn)
    assert _log_rows(direct_dsn) == 0


@pytest.mark.parametrize(
    "statement", [s for s in DESTRUCTIVE + SERVER_ESCAPES if ";" not in s.replace("$$", "")]
)
def test_psycopg_extended_protocol_cannot_run_it(
    guarded: BastionProcess, victim: str, direct_dsn: str, statement: str
) -> None:
    with psycopg.connect(guarded.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as caught:
            conn.execute(statement, prepare=True)
        assert str(caught.value).startswith("bastion: ")
        assert conn.execute("SELECT 1").fetchone() == (1,)  # the session goes on
    assert _intact(direct_dsn)


def test_harmless_lookalikes_still_run(guarded: BastionProcess, victim: str) -> None:
    with psycopg.connect(guarded.dsn(), autocommit=True) as conn:
        assert conn.execute("SELECT $$; DROP TABLE victim; $$").fetchone() == (
            "; DROP TABLE victim; ",
        )
        assert conn.execute("SELECT E'\\'; DROP TABLE victim; --'").fetchone() is not None
        conn.execute("DELETE FROM victim WHERE id = 99")
        conn.execute("UPDATE victim SET secret = secret WHERE id = 1")


def test_denial_inside_a_transaction_fails_it_for_both_sides(
    guarded: BastionProcess, victim: str, direct_dsn: str
) -> None:
    with psycopg.connect(guarded.dsn()) as conn:
        conn.execute("INSERT INTO victim_log VALUES ('inside')")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DROP TABLE victim")
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("INSERT INTO victim_log VALUES ('after')")
        conn.commit()  # the server answers ROLLBACK: nothing around the denial is kept
    assert _log_rows(direct_dsn) == 0
    assert _intact(direct_dsn)


def test_psql_transaction_with_a_denied_statement_commits_nothing(
    guarded: BastionProcess, victim: str, direct_dsn: str
) -> None:
    script = (
        "BEGIN;\nINSERT INTO victim_log VALUES ('a');\nDROP TABLE victim;\n"
        "INSERT INTO victim_log VALUES ('b');\nCOMMIT;\n"
    )
    result = subprocess.run(
        ["psql", guarded.dsn(), "-X"], input=script, capture_output=True, text=True, timeout=30
    )
    assert "bastion: " in result.stderr
    assert "ROLLBACK" in result.stdout
    assert _log_rows(direct_dsn) == 0


def test_denial_in_an_extended_pipeline(
    guarded: BastionProcess, victim: str, direct_dsn: str
) -> None:
    with psycopg.connect(guarded.dsn()) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.pipeline():
            conn.execute("INSERT INTO victim_log VALUES (%s)", ["p1"])
            conn.execute("DROP TABLE victim")
            conn.execute("INSERT INTO victim_log VALUES (%s)", ["p2"])
        conn.rollback()
        with conn.pipeline():
            conn.execute("INSERT INTO victim_log VALUES (%s)", ["p3"])
        conn.commit()
    assert _intact(direct_dsn)
    with psycopg.connect(direct_dsn) as check:
        notes = [r[0] for r in check.execute("SELECT note FROM victim_log")]
    assert notes == ["p3"]


def test_same_table_name_in_another_schema(
    guarded: BastionProcess, victim: str, direct_dsn: str
) -> None:
    with psycopg.connect(direct_dsn, autocommit=True) as admin:
        admin.execute("CREATE SCHEMA IF NOT EXISTS other")
        admin.execute("CREATE TABLE IF NOT EXISTS other.victim (id int)")
    try:
        for statement in ("DROP TABLE other.victim", "SET search_path = other; DROP TABLE victim"):
            result = _psql(guarded.dsn(), statement)
            assert "bastion: " in result.stderr
        with psycopg.connect(direct_dsn) as check:
            assert check.execute("SELECT to_regclass('other.victim') IS NOT NULL").fetchone() == (
                True,
            )
    finally:
        with psycopg.connect(direct_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP SCHEMA other CASCADE"))


def test_fast_path_function_calls_are_stopped_in_production(
    guarded: BastionProcess, victim: str, tmp_path: Path
) -> None:
    """psql's \\lo_import calls lo_creat and lowrite through FunctionCall messages, which
    name functions by OID: on a production target the guardrail refuses them."""
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"payload")
    result = subprocess.run(
        ["psql", guarded.dsn(), "-X"],
        input=f"\\lo_import '{blob}'\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "bastion: guardrail.function_call" in result.stderr, result.stderr

"""Real clients through a real Bastion return exactly what a direct connection returns."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import subprocess
import uuid

import psycopg
import pytest
import sqlalchemy as sa
from psycopg.conninfo import conninfo_to_dict

from support.asyncpg_client import asyncpg_connect
from support.bastion import BastionProcess

QUERIES = [
    "SELECT id, full_name, email, phone, card_number, ssn, birth_date, city, notes "
    "FROM customers ORDER BY id",
    "SELECT o.id, o.created_at, o.status, o.total, c.email FROM orders o "
    "JOIN customers c ON c.id = o.customer_id ORDER BY o.id LIMIT 300",
    "SELECT * FROM payments ORDER BY id",
    "SELECT * FROM api_credentials ORDER BY id",
    "SELECT 1::int2, 2::int4, 3::int8, 1.5::float4, 2.25::float8, 12.345::numeric, true, "
    "'x'::char(3), 'y'::varchar, 'z'::text, '\\x00ff'::bytea, '2024-02-29'::date, "
    "'12:34:56'::time, '2024-02-29 12:34:56+02'::timestamptz, '1 day 2 hours'::interval, "
    "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, '{\"a\": [1, 2]}'::jsonb, "
    "ARRAY[1, 2, NULL], '192.168.0.1/24'::inet, NULL::text, 'ü ñ 日本'::text",
    "SELECT g, md5(g::text) FROM generate_series(1, 5000) g",
]


def _psql(dsn: str, *args: str, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["psql", dsn, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", *args],
        capture_output=True,
        text=True,
        input=input_text,
        timeout=60,
    )


def test_psql_output_matches_direct(bastion: BastionProcess, direct_dsn: str) -> None:
    for query in QUERIES:
        through = _psql(bastion.dsn(), "-c", query)
        direct = _psql(direct_dsn, "-c", query)
        assert through.returncode == 0, through.stderr
        assert through.stdout == direct.stdout
        assert through.stdout.strip()


def test_psql_script_with_transactions_and_errors(bastion: BastionProcess) -> None:
    script = """
    CREATE TEMP TABLE t (a int PRIMARY KEY, b text);
    BEGIN;
    INSERT INTO t VALUES (1, 'one'), (2, 'two');
    SAVEPOINT s;
    INSERT INTO t VALUES (1, 'dup');
    ROLLBACK TO SAVEPOINT s;
    INSERT INTO t VALUES (3, 'three');
    COMMIT;
    SELECT string_agg(b, ',' ORDER BY a) FROM t;
    """
    result = _psql(bastion.dsn(), "-v", "ON_ERROR_STOP=0", input_text=script)
    assert "duplicate key value" in result.stderr
    assert result.stdout.strip().splitlines()[-1] == "one,two,three"


@pytest.mark.parametrize("binary", [False, True])
def test_psycopg_text_and_binary_match_direct(
    bastion: BastionProcess, direct_dsn: str, binary: bool
) -> None:
    with psycopg.connect(bastion.dsn()) as proxied, psycopg.connect(direct_dsn) as direct:
        for query in QUERIES:
            a = proxied.cursor(binary=binary).execute(query).fetchall()
            b = direct.cursor(binary=binary).execute(query).fetchall()
            assert a == b
            assert a


def test_psycopg_parameters_and_types(bastion: BastionProcess) -> None:
    value_uuid = uuid.uuid4()
    with psycopg.connect(bastion.dsn()) as conn:
        row = conn.execute(
            "SELECT %s::int, %s::text, %s::numeric, %s::date, %s::uuid, %s::bytea",
            (
                7,
                "seven",
                decimal.Decimal("7.70"),
                datetime.date(2020, 1, 2),
                value_uuid,
                b"\x00\x01",
            ),
        ).fetchone()
    assert row == (
        7,
        "seven",
        decimal.Decimal("7.70"),
        datetime.date(2020, 1, 2),
        value_uuid,
        b"\x00\x01",
    )


def test_psycopg_pipeline_recovers_after_error(bastion: BastionProcess) -> None:
    with psycopg.connect(bastion.dsn(), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.DivisionByZero), conn.pipeline():
            conn.execute("SELECT 1")
            conn.execute("SELECT 1/0")
            conn.execute("SELECT 2")
        with conn.pipeline():
            cursors = [conn.execute("SELECT %s::int", (i,)) for i in range(20)]
        assert [c.fetchone() for c in cursors] == [(i,) for i in range(20)]


def test_psycopg_copy_round_trip(bastion: BastionProcess) -> None:
    rows = [(i, f"row {i}", None if i % 7 == 0 else i * 1.5) for i in range(20_000)]
    with psycopg.connect(bastion.dsn()) as conn:
        conn.execute("CREATE TEMP TABLE c (a int, b text, f float8)")
        with conn.cursor().copy("COPY c FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        assert conn.execute("SELECT count(*) FROM c").fetchone() == (len(rows),)
        with conn.cursor().copy("COPY c TO STDOUT (FORMAT binary)") as copy:
            copy.set_types(["int4", "text", "float8"])
            back = list(copy.rows())
        assert back == rows
        with conn.cursor().copy(
            "COPY (SELECT a FROM c ORDER BY a LIMIT 3) TO STDOUT (FORMAT csv)"
        ) as copy:
            assert b"".join(bytes(chunk) for chunk in copy) == b"0\n1\n2\n"


def test_copy_fail_from_client_keeps_session_usable(bastion: BastionProcess) -> None:
    with psycopg.connect(bastion.dsn()) as conn:
        conn.execute("CREATE TEMP TABLE cf (a int)")
        conn.commit()
        with (
            pytest.raises(psycopg.errors.QueryCanceled),
            conn.cursor().copy("COPY cf FROM STDIN") as copy,
        ):
            copy.write_row((1,))
            raise psycopg.errors.QueryCanceled("stop")  # psycopg answers CopyFail
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM cf").fetchone() == (0,)


def test_psql_copy_and_large_object_fastpath(bastion: BastionProcess, tmp_path) -> None:  # type: ignore[no-untyped-def]
    src = tmp_path / "in.csv"
    src.write_text("".join(f"{i},name {i}\n" for i in range(1000)))
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)) * 100)
    out = tmp_path / "out.bin"
    script = f"""
    CREATE TEMP TABLE pc (a int, b text);
    \\copy pc FROM '{src}' WITH (FORMAT csv)
    SELECT count(*), sum(a) FROM pc;
    BEGIN;
    \\lo_import '{blob}'
    \\lo_export :LASTOID '{out}'
    ROLLBACK;
    """
    result = _psql(bastion.dsn(), input_text=script)
    assert result.returncode == 0, result.stderr
    assert "1000|499500" in result.stdout
    # \\lo_import and \\lo_export use the FunctionCall (fast-path) protocol message.
    assert out.read_bytes() == blob.read_bytes()


def test_notify_and_parameter_status(bastion: BastionProcess) -> None:
    with (
        psycopg.connect(bastion.dsn(), autocommit=True) as listener,
        psycopg.connect(bastion.dsn(), autocommit=True) as sender,
    ):
        listener.execute("LISTEN bastion_chan")
        sender.execute("NOTIFY bastion_chan, 'hello there'")
        notes = []
        for note in listener.notifies(timeout=5, stop_after=1):
            notes.append((note.channel, note.payload))
        assert notes == [("bastion_chan", "hello there")]
        listener.execute("SET application_name = 'renamed-by-set'")
        assert listener.info.parameter_status("application_name") == "renamed-by-set"
        notices: list[str] = []
        listener.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        listener.execute("DO $$ BEGIN RAISE NOTICE 'note from the server'; END $$")
        assert notices == ["note from the server"]


def test_session_state_persists(bastion: BastionProcess) -> None:
    with psycopg.connect(bastion.dsn()) as conn:
        conn.execute("SET search_path TO pg_catalog, public")
        conn.execute("DECLARE held CURSOR WITH HOLD FOR SELECT g FROM generate_series(1, 10) g")
        conn.commit()
        assert conn.execute("FETCH 3 FROM held").fetchall() == [(1,), (2,), (3,)]
        conn.commit()
        assert conn.execute("FETCH 2 FROM held").fetchall() == [(4,), (5,)]
        assert conn.execute("SHOW search_path").fetchone() == ("pg_catalog, public",)
        conn.execute("PREPARE p(int) AS SELECT $1 * 3")
        assert conn.execute("EXECUTE p(5)").fetchone() == (15,)


def test_backend_pid_is_the_servers(bastion: BastionProcess, direct_dsn: str) -> None:
    with psycopg.connect(bastion.dsn(application_name="pid-check")) as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert pid is not None
        assert conn.info.backend_pid == pid[0]
        with psycopg.connect(direct_dsn, autocommit=True) as admin:
            row = admin.execute(
                "SELECT application_name FROM pg_stat_activity WHERE pid = %s", pid
            ).fetchone()
        assert row == ("pid-check",)


def test_asyncpg_prepared_binary_and_cursors(bastion: BastionProcess, direct_dsn: str) -> None:
    async def fetch_all(dsn: str) -> list[object]:
        conn = await asyncpg_connect(dsn)
        try:
            results: list[object] = []
            stmt = await conn.prepare(
                "SELECT id, email, birth_date FROM customers WHERE id <= $1 ORDER BY id"
            )
            results.append([tuple(r) for r in await stmt.fetch(50)])
            results.append([tuple(r) for r in await stmt.fetch(5)])
            async with conn.transaction():
                rows = [
                    r[0]
                    async for r in conn.cursor(
                        "SELECT g FROM generate_series(1, 1000) g", prefetch=37
                    )
                ]
                results.append(rows)
            await conn.executemany("SELECT $1::int", [(i,) for i in range(50)])
            results.append(await conn.fetchval("SELECT $1::jsonb", '{"k": 1}'))
            return results
        finally:
            await conn.close()

    assert asyncio.run(fetch_all(bastion.dsn())) == asyncio.run(fetch_all(direct_dsn))


def test_sqlalchemy_orm_queries(bastion: BastionProcess, direct_dsn: str) -> None:
    def run(dsn: str) -> list[tuple[object, ...]]:
        params = conninfo_to_dict(dsn)
        url = sa.URL.create(
            "postgresql+psycopg",
            username=params["user"],
            password=params.get("password"),
            host=params["host"],
            port=int(params["port"]),
            database=params["dbname"],
        )
        engine = sa.create_engine(url)
        meta = sa.MetaData()
        customers = sa.Table("customers", meta, autoload_with=engine)
        orders = sa.Table("orders", meta, autoload_with=engine)
        query = (
            sa.select(customers.c.city, sa.func.count(orders.c.id), sa.func.sum(orders.c.total))
            .join(orders, orders.c.customer_id == customers.c.id)
            .group_by(customers.c.city)
            .order_by(customers.c.city)
        )
        with engine.connect() as conn:
            rows = [tuple(r) for r in conn.execute(query)]
        engine.dispose()
        return rows

    proxied = run(bastion.dsn())
    assert proxied == run(direct_dsn)
    assert proxied


@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_pgbench_protocols(bastion: BastionProcess, mode: str) -> None:
    script = "\\set id random(1, 200)\nSELECT email FROM customers WHERE id = :id;\n"
    result = subprocess.run(
        [
            "pgbench",
            "-n",
            "-M",
            mode,
            "-c",
            "4",
            "-j",
            "2",
            "-t",
            "100",
            "-f",
            "/dev/stdin",
            bastion.dsn(),
        ],
        input=script,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "number of transactions actually processed: 400/400" in result.stdout
    assert "number of failed transactions: 0" in result.stdout


@pytest.mark.parametrize(
    "params",
    [
        {"options": "-c role=pg_read_all_data"},
        {"options": "-csession_authorization=postgres"},
        {"options": "--default-transaction-read-only=off"},
    ],
)
def test_identity_changing_startup_settings_are_refused(
    bastion: BastionProcess, params: dict[str, str]
) -> None:
    with pytest.raises(psycopg.OperationalError, match="is not allowed through Bastion"):
        psycopg.connect(bastion.dsn(**params))


def test_role_as_a_startup_parameter_is_refused(bastion: BastionProcess) -> None:
    import socket

    from bastion.wire.postgres import startup

    with socket.create_connection(("127.0.0.1", bastion.port), timeout=5) as sock:
        sock.sendall(
            startup.encode_startup_message(
                {"user": "alice", "database": "shop", "role": "postgres"}
            )
        )
        reply = sock.recv(4096)
    # Settings are checked after authentication, so an unauthenticated client learns nothing:
    # the first reply is the SCRAM request.
    assert reply[:1] == b"R"


def test_ordinary_startup_settings_pass(bastion: BastionProcess) -> None:
    with psycopg.connect(bastion.dsn(options="-c search_path=pg_catalog -c work_mem=8MB")) as conn:
        assert conn.execute("SHOW work_mem").fetchone() == ("8MB",)
        assert conn.execute("SHOW search_path").fetchone() == ("pg_catalog",)

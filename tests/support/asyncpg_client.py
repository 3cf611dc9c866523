"""Connecting asyncpg where a libpq key=value connection string points (asyncpg reads URLs only)."""

from __future__ import annotations

import asyncpg
from psycopg.conninfo import conninfo_to_dict


async def asyncpg_connect(dsn: str) -> asyncpg.Connection:
    """An asyncpg connection (without TLS) to where the libpq `dsn` points."""
    params = conninfo_to_dict(dsn)
    return await asyncpg.connect(
        host=params["host"],
        port=int(params["port"]),
        user=params["user"],
        password=params.get("password"),
        database=params["dbname"],
        ssl=False,
    )

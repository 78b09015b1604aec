"""Fixtures for namewire.db: the same tests against SQLite (a file per test) and a real PostgreSQL.

PostgreSQL is started once per session (tests/db/postgres.py) and each test gets a database of
its own, dropped afterwards. Without PostgreSQL or psycopg the postgres cases skip and say why.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvloop

import namewire.db
from tests.db.postgres import PostgresServer, PostgresUnavailable

_databases = itertools.count(1)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "uvloop_only: run on uvloop only (the loop namewire.run uses)")


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    if item.get_closest_marker("uvloop_only"):
        return {"uvloop": uvloop.new_event_loop}
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install -e '.[dev]')")
    server = PostgresServer()
    try:
        server.start()
    except PostgresUnavailable as exc:
        pytest.skip(f"PostgreSQL cannot be started here: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def sqlite_rows_per_second() -> float:
    """How fast this machine's SQLite counts through a recursive CTE (for a query of known length)."""
    connection = sqlite3.connect(":memory:")
    start = time.perf_counter()
    connection.execute(COUNT_TO, (500_000,)).fetchone()
    elapsed = time.perf_counter() - start
    connection.close()
    return 500_000 / elapsed


COUNT_TO = (
    "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r WHERE x < ?) "
    "SELECT count(*) FROM r"
)


@dataclass
class Backend:
    """One database to test against: how to connect, its placeholder, a slow query."""

    name: str
    open: Callable[..., namewire.db.Database]
    mark: str  # the driver's placeholder: "?" or "%s"
    slow_query: Callable[[float], tuple[str, tuple[Any, ...]]]  # seconds -> (sql, params)

    def sql(self, text: str) -> str:
        """``text`` written with ``?`` placeholders, in this driver's paramstyle."""
        return text.replace("?", self.mark)


@pytest.fixture(params=["sqlite", "postgres"])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Backend]:
    opened: list[namewire.db.Database] = []

    def track(db: namewire.db.Database) -> namewire.db.Database:
        opened.append(db)
        return db

    drop: Callable[[], None] = lambda: None
    if request.param == "sqlite":
        rate = request.getfixturevalue("sqlite_rows_per_second")
        path = tmp_path / "test.db"
        chosen = Backend(
            "sqlite",
            lambda **kw: track(namewire.db.connect(path, **kw)),
            "?",
            lambda seconds: (COUNT_TO, (int(rate * seconds),)),
        )
    else:
        import psycopg

        server: PostgresServer = request.getfixturevalue("postgres")
        dbname = f"t{next(_databases)}"
        with psycopg.connect(server.dsn, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {dbname}")

        def drop() -> None:
            with psycopg.connect(server.dsn, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE {dbname} WITH (FORCE)")

        dsn = server.dsn.replace("dbname=postgres", f"dbname={dbname}")
        chosen = Backend(
            "postgres",
            lambda **kw: track(namewire.db.connect(dsn, driver=psycopg, **kw)),
            "%s",
            lambda seconds: ("SELECT pg_sleep(%s), 1", (seconds,)),
        )
    try:
        yield chosen
    finally:
        for db in opened:
            await db.close()
        drop()

"""Fixtures for namewire.db: the same tests against SQLite (a file per test) and a real PostgreSQL.

PostgreSQL is started once per session (tests/db/postgres.py) and each test gets a schema of
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


def sqlite_rows_per_second() -> float:
    """How fast SQLite counts through a recursive CTE here, now (for a query of known length:
    measured just before each use, as the machine's load changes)."""
    connection = sqlite3.connect(":memory:")
    start = time.perf_counter()
    connection.execute(COUNT_TO, (200_000,)).fetchone()
    elapsed = time.perf_counter() - start
    connection.close()
    return 200_000 / elapsed


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
    # seconds -> (sql, params): a query the database works on for that long (SQLite: a recursive
    # CTE, all C with the GIL released; it takes longer on a busy machine) ...
    slow_query: Callable[[float], tuple[str, tuple[Any, ...]]]
    # ... and one that waits that long without using a CPU (SQLite: a user function that sleeps)
    sleep_query: Callable[[float], tuple[str, tuple[Any, ...]]]

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
        path = tmp_path / "test.db"

        def open_sqlite(setup: Callable[[Any], object] | None = None, **kw: Any) -> Any:
            def prepare(connection: sqlite3.Connection) -> None:
                connection.create_function("sleep", 1, lambda s: time.sleep(s) or 1)
                if setup is not None:
                    setup(connection)

            return track(namewire.db.connect(path, setup=prepare, **kw))

        chosen = Backend(
            "sqlite",
            open_sqlite,
            "?",
            lambda seconds: (COUNT_TO, (int(sqlite_rows_per_second() * seconds),)),
            lambda seconds: ("SELECT sleep(?)", (seconds,)),
        )
    else:
        import psycopg

        server: PostgresServer = request.getfixturevalue("postgres")
        # A schema per test (cheaper than a database): every connection of the test starts in it.
        schema = f"t{next(_databases)}"
        with psycopg.connect(server.dsn, autocommit=True) as admin:
            admin.execute(f"CREATE SCHEMA {schema}")

        def drop() -> None:
            with psycopg.connect(server.dsn, autocommit=True) as admin:
                admin.execute(f"DROP SCHEMA {schema} CASCADE")

        dsn = f"{server.dsn} options=-csearch_path={schema}"
        chosen = Backend(
            "postgres",
            lambda **kw: track(namewire.db.connect(dsn, driver=psycopg, **kw)),
            "%s",
            lambda seconds: ("SELECT pg_sleep(%s), 1", (seconds,)),
            lambda seconds: ("SELECT pg_sleep(%s), 1", (seconds,)),
        )
    try:
        yield chosen
    finally:
        for db in opened:
            await db.close()
        drop()

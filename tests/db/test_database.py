"""namewire.db against SQLite and a real PostgreSQL: statements, errors, transactions, cancellation,
the pool's bound, and an event loop that keeps time while a query runs."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

import namewire
import namewire.db
from tests.db.conftest import Backend

pytestmark = pytest.mark.timeout(60)


async def make_table(db: namewire.db.Database) -> None:
    await db.execute("CREATE TABLE kv (k VARCHAR(40) PRIMARY KEY, v INTEGER NOT NULL)")


async def test_statements_round_trip(backend: Backend) -> None:
    async with backend.open() as db:
        await make_table(db)
        added = await db.executemany(
            backend.sql("INSERT INTO kv (k, v) VALUES (?, ?)"), [("a", 1), ("b", 2), ("c", 3)]
        )
        assert added == 3
        assert await db.execute(backend.sql("UPDATE kv SET v = v * 10 WHERE v >= ?"), (2,)) == 2
        rows = await db.fetch_all("SELECT k, v FROM kv ORDER BY k")
        assert [tuple(r) for r in rows] == [("a", 1), ("b", 20), ("c", 30)]
        one = await db.fetch_one(backend.sql("SELECT v FROM kv WHERE k = ?"), ("b",))
        assert one is not None and tuple(one) == (20,)
        assert await db.fetch_one(backend.sql("SELECT v FROM kv WHERE k = ?"), ("zz",)) is None
        # Each statement alone is committed: another pool (other connections) sees it.
        async with backend.open(size=1) as other:
            assert len(await other.fetch_all("SELECT k FROM kv")) == 3


async def test_error_carries_the_driver_message_and_the_statement(backend: Backend) -> None:
    async with backend.open(size=1) as db:
        await make_table(db)
        insert = backend.sql("INSERT INTO kv (k, v) VALUES (?, ?)")
        await db.execute(insert, ("a", 1))
        with pytest.raises(namewire.DatabaseError) as caught:
            await db.execute(insert, ("a", 2))
        error = caught.value
        assert isinstance(error, namewire.NamewireError)
        assert error.operation == "execute"
        assert error.statement == insert
        assert error.__cause__ is error.driver_error is not None
        if backend.name == "sqlite":
            assert error.driver_type == "sqlite3.IntegrityError"
            assert error.driver_code == "SQLITE_CONSTRAINT_PRIMARYKEY"
            assert "UNIQUE constraint failed: kv.k" in str(error)
        else:
            assert error.driver_type == "psycopg.errors.UniqueViolation"
            assert error.driver_code == "23505"
            assert "duplicate key value violates unique constraint" in str(error)
        assert f"(statement: {insert})" in str(error)
        assert str(error).startswith(f"execute on {db.label}: ")
        # The failure was rolled back on its connection (PostgreSQL would otherwise refuse every
        # statement until a rollback): the same, only connection answers the next one.
        with pytest.raises(namewire.DatabaseError, match="no such table|does not exist"):
            await db.fetch_all("SELECT * FROM missing_table")
        assert await db.fetch_one("SELECT count(*) FROM kv") == (1,)
        assert db.statistics().open == 1


async def test_transaction_commits_or_rolls_back(backend: Backend) -> None:
    async with backend.open() as db:
        await make_table(db)
        insert = backend.sql("INSERT INTO kv (k, v) VALUES (?, ?)")
        async with db.transaction() as tx:
            await tx.execute(insert, ("a", 1))
            await tx.execute(insert, ("b", 2))
            # Uncommitted: visible inside, not to the pool's other connections.
            assert await tx.fetch_one("SELECT count(*) FROM kv") == (2,)
            assert await db.fetch_one("SELECT count(*) FROM kv") == (0,)
        assert await db.fetch_one("SELECT count(*) FROM kv") == (2,)

        with pytest.raises(ZeroDivisionError):
            async with db.transaction() as tx:
                await tx.execute(insert, ("c", 3))
                1 / 0  # noqa: B018
        assert await db.fetch_one("SELECT count(*) FROM kv") == (2,)
        with pytest.raises(namewire.DatabaseError, match="transaction used after it ended"):
            await tx.execute(insert, ("d", 4))
        assert db.statistics().in_use == 0


async def test_failed_commit_raises_and_rolls_back(backend: Backend) -> None:
    # A deferred foreign key is checked at COMMIT: the commit itself fails.
    setup = (lambda c: c.execute("PRAGMA foreign_keys = ON")) if backend.name == "sqlite" else None
    async with backend.open(size=1, setup=setup) as db:
        await db.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        await db.execute(
            "CREATE TABLE child (pid INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
        )
        with pytest.raises(namewire.DatabaseError) as caught:
            async with db.transaction() as tx:
                await tx.execute("INSERT INTO child (pid) VALUES (7)")
        assert caught.value.operation == "commit"
        assert "FOREIGN KEY constraint failed" in str(caught.value) or (
            "foreign key constraint" in str(caught.value)
        )
        assert await db.fetch_one("SELECT count(*) FROM child") == (0,)


async def test_cancelled_transaction_rolls_back_before_the_connection_is_reused(
    backend: Backend,
) -> None:
    # One connection: whoever comes next gets the very connection the cancelled transaction used,
    # and would see its uncommitted row if it were still open.
    async with backend.open(size=1) as db:
        await make_table(db)
        inside = asyncio.Event()

        async def writer() -> None:
            async with db.transaction() as tx:
                await tx.execute(backend.sql("INSERT INTO kv (k, v) VALUES (?, ?)"), ("x", 1))
                inside.set()
                await asyncio.sleep(30)

        task = asyncio.create_task(writer())
        await inside.wait()
        waiting = asyncio.create_task(db.fetch_all("SELECT k FROM kv"))  # queued behind it
        await asyncio.sleep(0.05)
        assert db.statistics().waiting == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await waiting == []
        assert await db.fetch_one("SELECT count(*) FROM kv") == (0,)
        assert db.statistics().open == 1


async def test_cancel_during_a_statement_in_a_transaction(backend: Backend) -> None:
    async with backend.open(size=1) as db:
        await make_table(db)
        slow_sql, slow_params = backend.slow_query(1.0)

        async def writer() -> None:
            async with db.transaction() as tx:
                await tx.execute(backend.sql("INSERT INTO kv (k, v) VALUES (?, ?)"), ("x", 1))
                await tx.fetch_one(slow_sql, slow_params)

        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await writer()
        # Left only after the rollback: the next statement sees no row, on the same connection.
        assert await db.fetch_one("SELECT count(*) FROM kv") == (0,)


async def test_cancelled_statement_is_interrupted_or_finishes_before_reuse(
    backend: Backend,
) -> None:
    async with backend.open(size=1) as db:
        seconds = 8.0 if backend.name == "sqlite" else 1.0
        slow_sql, slow_params = backend.slow_query(seconds)
        task = asyncio.create_task(db.fetch_one(slow_sql, slow_params))
        await asyncio.sleep(0.2)
        start = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await db.fetch_one("SELECT 1") == (1,)
        if backend.name == "sqlite":
            # sqlite3's interrupt() stopped it: far sooner than the 8 s it would have run.
            assert time.monotonic() - start < seconds / 2
        assert db.statistics() == namewire.db.PoolStatistics(1, 1, 1, 0, 0, 0, 0)


async def test_the_pool_is_bounded_and_a_cancelled_waiter_loses_nothing(backend: Backend) -> None:
    async with backend.open(size=2) as db:
        slow_sql, slow_params = backend.sleep_query(0.25)
        # 2 connections x 4 statements queued on each: 8 in flight, the other 3 wait for room.
        busy = [asyncio.create_task(db.fetch_one(slow_sql, slow_params)) for _ in range(11)]
        async with asyncio.timeout(10):
            while db.statistics().queued < 8:  # until the second connection is open
                await asyncio.sleep(0.005)
        stats = db.statistics()
        assert (stats.open, stats.in_use, stats.queued, stats.waiting) == (2, 2, 8, 3)
        busy[-1].cancel()  # a waiter gives up: its place must not be lost
        busy[3].cancel()  # a queued statement gives up: it is skipped, its place freed
        results = await asyncio.gather(*busy, return_exceptions=True)
        assert isinstance(results[-1], asyncio.CancelledError)
        assert isinstance(results[3], asyncio.CancelledError)
        assert all(r is not None and not isinstance(r, BaseException) for r in results[:3])
        assert db.statistics() == namewire.db.PoolStatistics(2, 2, 2, 0, 0, 0, 0)


async def test_a_transaction_waits_for_a_connection_of_its_own(backend: Backend) -> None:
    async with backend.open(size=1) as db:
        await make_table(db)
        slow_sql, slow_params = backend.sleep_query(0.2)
        statements = [asyncio.create_task(db.fetch_one(slow_sql, slow_params)) for _ in range(2)]
        await asyncio.sleep(0.02)
        order: list[str] = []

        async def transaction() -> None:
            async with db.transaction() as tx:
                order.append("begun")
                await tx.execute(backend.sql("INSERT INTO kv (k, v) VALUES (?, ?)"), ("t", 1))
                assert db.statistics().transactions == 1
                later = asyncio.create_task(db.fetch_one("SELECT count(*) FROM kv"))
                await asyncio.sleep(0.05)
                assert not later.done()  # it may not run inside our transaction
            order.append("committed")
            assert await later == (1,)

        async def statements_done() -> None:
            await asyncio.gather(*statements)
            order.append("statements")

        await asyncio.gather(transaction(), statements_done())
        assert order == ["statements", "begun", "committed"]


async def test_a_closed_database_refuses_and_waits_for_work_in_flight(backend: Backend) -> None:
    db = await backend.open(size=1)
    slow_sql, slow_params = backend.sleep_query(0.3)
    running = asyncio.create_task(db.fetch_one(slow_sql, slow_params))
    await asyncio.sleep(0.05)
    await db.close()
    assert running.done() and running.result() is not None
    with pytest.raises(namewire.DatabaseError, match="the database is closed"):
        await db.execute("SELECT 1")
    assert db.statistics().open == 0


@pytest.mark.uvloop_only
async def test_a_1ms_timer_keeps_time_while_a_2s_query_runs(backend: Backend) -> None:
    async with backend.open() as db:
        ticks: list[float] = []
        slow_sql, slow_params = backend.slow_query(2.0)
        async with namewire.every(0.001, lambda: ticks.append(time.perf_counter())):
            start = time.perf_counter()
            await db.fetch_one(slow_sql, slow_params)
            took = time.perf_counter() - start
        assert took > 0.5, f"the slow query took only {took:.2f}s"
        gaps = [b - a for a, b in itertools.pairwise(ticks)]
        assert len(ticks) > took / 0.01, f"{len(ticks)} ticks in {took:.2f}s"
        # Had the loop waited for the query, one gap would be the whole query. A quarter of it
        # leaves room for a loaded machine's scheduling delays (no speed is asserted here).
        assert max(gaps) < took / 4, f"worst gap between 1 ms ticks: {max(gaps) * 1000:.0f} ms"


async def test_connect_failures_are_database_errors(backend: Backend, tmp_path) -> None:
    if backend.name == "sqlite":
        db = namewire.db.connect(tmp_path / "no" / "such" / "dir.db")
        pattern = "connect on .*dir.db: sqlite3.OperationalError: unable to open database file"
    else:
        import psycopg

        # Labelled by the driver's name: the DSN itself (it may hold a password) is never shown.
        db = namewire.db.connect(
            "host=/nonexistent dbname=x password=secret connect_timeout=2", driver=psycopg
        )
        pattern = "connect on psycopg: psycopg.OperationalError: .*"
    with pytest.raises(namewire.DatabaseError, match=pattern) as caught:
        await db
    assert caught.value.operation == "connect"
    assert "secret" not in str(caught.value)
    with pytest.raises(namewire.DatabaseError):  # a statement tries again, and fails the same way
        await db.execute("SELECT 1")
    assert db.statistics().open == 0
    await db.close()

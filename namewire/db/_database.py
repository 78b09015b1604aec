"""`Database` (a pool of connections to one database), `Transaction`, and `connect`.

Every statement runs on the thread of the connection it uses (`_thread`), so the event loop only
waits for a future. A statement on its own is its own transaction: it is committed on its thread
before the connection goes back to the pool, and rolled back there if it failed. A `Transaction`
holds one connection from ``BEGIN`` to ``COMMIT``/``ROLLBACK``.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from types import ModuleType, TracebackType
from typing import Any, Self, TypeAlias, TypeVar

from ..errors import DatabaseError
from ._drivers import Connector, connector_of, profile_of
from ._pool import Pool, PoolStatistics
from ._thread import ConnectionThread

__all__ = ["Database", "Params", "Row", "Transaction", "connect"]

log = logging.getLogger("namewire.db")
T = TypeVar("T")

Params: TypeAlias = Sequence[Any] | Mapping[str, Any] | None
"""A statement's parameters in the driver's paramstyle (sqlite3: ``?`` or ``:name``; psycopg:
``%s`` or ``%(name)s``). None sends the statement without parameters."""

Row: TypeAlias = Any
"""A row as the driver's cursor returns it: a tuple, unless a row factory set up on the
connection (``setup=``) makes it something else (``sqlite3.Row``, psycopg's ``dict_row``)."""


class _Statements:
    """The statement methods, shared by `Database` (each statement alone) and `Transaction`."""

    async def _submit(self, operation: str, statement: str | None, work: Callable[[Any], T]) -> T:
        raise NotImplementedError

    async def execute(self, sql: str, params: Params = None) -> int:
        """Run one statement; returns the driver's row count (-1 when it does not know).

        Raises `DatabaseError` with the driver's message and the statement.
        """
        return await self._submit("execute", sql, lambda c: _rowcount(c, sql, params))

    async def executemany(self, sql: str, seq_of_params: Iterable[Params]) -> int:
        """Run one statement once per parameter set; returns the driver's row count."""
        rows = list(seq_of_params)  # consumed here, not on the thread: a generator stays ours
        return await self._submit("executemany", sql, lambda c: _rowcount_many(c, sql, rows))

    async def fetch_one(self, sql: str, params: Params = None) -> Row | None:
        """The first row of the result, or None when there is none."""
        return await self._submit("fetch_one", sql, lambda c: _fetch(c, sql, params, False))

    async def fetch_all(self, sql: str, params: Params = None) -> list[Row]:
        """Every row of the result, as a list."""
        rows: list[Row] = await self._submit(
            "fetch_all", sql, lambda c: _fetch(c, sql, params, True)
        )
        return rows

    async def run(self, fn: Callable[[Any], T]) -> T:
        """Call ``fn(connection)`` on the connection's thread with the driver's own connection,
        for what the four methods above do not cover (sqlite3's ``backup``, psycopg's ``copy``).
        Outside a transaction it is committed like a statement. ``fn`` must not keep the
        connection."""
        return await self._submit("run", None, fn)


class Database(_Statements):
    """A bounded pool of connections to one database, used from one event loop.

    Made by `connect`; opened by ``await``, by ``async with``, or by its first statement. At most
    ``size`` connections, each opened on its own thread when needed and used only there.
    Statements queue on the least busy connection (a few each, see `_pool`); a transaction gets a
    connection to itself. A caller that finds no room waits its turn (first come, first served).

    A cancelled caller (``task.cancel()``, ``asyncio.timeout``) stops waiting at once. Its
    statement is skipped if it has not started; if it is running it is interrupted where the
    driver can do that safely (sqlite3), else runs to its end, and it is rolled back unless it
    finished. The connection takes the next job only after that, so no caller ever gets a
    connection in the middle of someone else's statement or transaction.
    """

    def __init__(
        self,
        driver: ModuleType | Connector,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        *,
        size: int | None = None,
        setup: Callable[[Any], object] | None = None,
        name: str | None = None,
    ) -> None:
        self._connector = connector_of(driver)
        package, self._profile = profile_of(driver)
        self._args = args
        self._kwargs = {**self._profile.defaults, **kwargs}
        self.label: str = name or self._profile.label(args, kwargs) or package
        """How errors and thread names name this database."""
        private = self._profile.private(args, kwargs)
        if private and size not in (None, 1):
            raise ValueError(
                f"namewire.db: {self.label or ':memory:'!r} is private to one connection, so the "
                f"pool cannot hold {size}; use size=1, or a file"
            )
        self.size: int = size or (1 if private else 4)
        self._setup = setup
        self._pool: Pool | None = None
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._pool else "not opened"
        return f"<namewire.db.Database {self.label!r} size={self.size} {state}>"

    async def open(self) -> Self:
        """Open the first connection now (so a bad path or DSN fails here); returns the database.

        Raises `DatabaseError` when the driver cannot connect or ``setup`` fails.
        """
        if self._closed:
            raise DatabaseError("connect", self.label, reason="the database is closed")
        if self._pool is None:
            self._pool = Pool(asyncio.get_running_loop(), self.size, self._open_one, self.label)
            self._pool.finished(await self._pool.acquire("connect", exclusive=False))
        return self

    async def close(self) -> None:
        """Close the pool: new statements fail with `DatabaseError`; statements and
        transactions in flight finish first, then every connection is closed on its thread."""
        self._closed = True
        if self._pool is not None:
            await self._pool.close()

    def __await__(self) -> Generator[Any, None, Self]:
        return self.open().__await__()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def transaction(self, begin: str | None = None) -> Transaction:
        """A transaction on one connection: ``async with db.transaction() as tx:``.

        Commits when the block ends normally, rolls back when it raises or is cancelled. ``begin``
        replaces the driver's opening statement, for example ``"BEGIN IMMEDIATE"`` on SQLite to take
        the write lock at once (a read followed by a write in a deferred transaction can fail with
        "database is locked" when another process writes meanwhile).
        """
        return Transaction(self, begin if begin is not None else self._profile.begin)

    def statistics(self) -> PoolStatistics:
        """The pool's bound, its connections (open, idle, busy, lent to transactions), the
        statements queued on them and the callers waiting for room."""
        if self._pool is None:
            return PoolStatistics(self.size, 0, 0, 0, 0, 0, 0)
        return self._pool.statistics()

    async def _acquire(self, operation: str, exclusive: bool) -> tuple[Pool, ConnectionThread]:
        if self._pool is None:
            await self.open()
        assert self._pool is not None
        return self._pool, await self._pool.acquire(operation, exclusive=exclusive)

    async def _submit(self, operation: str, statement: str | None, work: Callable[[Any], T]) -> T:
        pool, thread = await self._acquire(operation, exclusive=False)
        label = self.label

        def alone(thread: ConnectionThread) -> T:
            connection = thread.connection
            try:
                result = work(connection)
                connection.commit()
                return result
            except Exception as exc:
                _rollback_quietly(thread)
                raise DatabaseError(
                    operation, label, statement=statement, driver_error=exc
                ) from exc

        job = thread.submit(alone, then=lambda _: pool.finished(thread))
        try:
            return await job.future
        except asyncio.CancelledError:
            thread.cancel(job, self._profile.interrupt)
            raise

    def _open_one(self, thread: ConnectionThread) -> None:
        """On the new connection's thread: connect, then run ``setup``."""
        try:
            thread.connection = self._connector(*self._args, **self._kwargs)
        except Exception as exc:
            raise DatabaseError("connect", self.label, driver_error=exc) from exc
        if self._setup is not None:
            try:
                self._setup(thread.connection)
                thread.connection.commit()
            except Exception as exc:
                raise DatabaseError("setup", self.label, driver_error=exc) from exc


class Transaction(_Statements):
    """One connection from ``BEGIN`` to ``COMMIT`` or ``ROLLBACK``; made by `Database.transaction`.

    Use it once, as ``async with``. Its statements run in the order they are awaited. Leaving the
    block normally commits (a failed commit raises `DatabaseError` and is rolled back); leaving it
    with an exception, cancellation included, rolls back, and the rollback has finished when the
    block has been left. Statements of ``db`` itself inside the block use other connections.
    """

    def __init__(self, db: Database, begin: str | None) -> None:
        self._db = db
        self._begin = begin
        self._pool: Pool | None = None
        self._thread: ConnectionThread | None = None
        self._state = "new"

    async def __aenter__(self) -> Self:
        if self._state != "new":
            raise RuntimeError("a namewire.db Transaction can be entered only once")
        self._state = "starting"
        self._pool, self._thread = await self._db._acquire("transaction", exclusive=True)
        self._state = "open"
        if self._begin is not None:
            try:
                await self.execute(self._begin)
            except BaseException:
                await self._end(commit=False, quiet=True)
                raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._state == "open":
            await self._end(commit=kind is None, quiet=kind is not None)

    async def _end(self, *, commit: bool, quiet: bool) -> None:
        pool, thread, label = self._pool, self._thread, self._db.label
        assert pool is not None and thread is not None
        self._state = "closed"

        def finish(thread: ConnectionThread) -> None:
            try:
                if commit:
                    thread.connection.commit()
                else:
                    thread.connection.rollback()
            except Exception as exc:
                _rollback_quietly(thread)
                operation = "commit" if commit else "rollback"
                raise DatabaseError(operation, label, driver_error=exc) from exc

        # The connection goes back when `finish` is done on its thread, even if we stop waiting.
        job = thread.submit(finish, then=lambda _: pool.returned(thread))
        try:
            await job.future
        except DatabaseError as error:
            if not quiet:
                raise
            log.warning("namewire.db: %s (after an error in the transaction)", error)

    async def _submit(self, operation: str, statement: str | None, work: Callable[[Any], T]) -> T:
        thread = self._thread
        if self._state != "open" or thread is None:
            where = "before it began" if self._state in ("new", "starting") else "after it ended"
            raise DatabaseError(
                operation, self._db.label, statement=statement,
                reason=f"transaction used {where}",
            )
        label = self._db.label

        def inside(thread: ConnectionThread) -> T:
            try:
                return work(thread.connection)
            except Exception as exc:
                raise DatabaseError(
                    operation, label, statement=statement, driver_error=exc
                ) from exc

        job = thread.submit(inside)
        try:
            return await job.future
        except asyncio.CancelledError:
            thread.cancel(job, self._db._profile.interrupt)
            raise


def connect(
    *args: Any,
    driver: ModuleType | Connector = sqlite3,
    size: int | None = None,
    setup: Callable[[Any], object] | None = None,
    name: str | None = None,
    **kwargs: Any,
) -> Database:
    """A `Database` for any DB-API 2.0 driver; ``args`` and ``kwargs`` go to its ``connect``.

    ``driver`` is the driver module or its connect function (default: the standard library's
    ``sqlite3``, so ``connect("app.db")`` is a SQLite file). ``size`` bounds the pool (default 4;
    1 for SQLite's ``:memory:``, which one connection alone can see). ``setup(connection)`` runs on
    every new connection's thread before its first use (PRAGMAs, user functions, row factories) and
    is committed. ``name`` labels the database in errors (default: the SQLite path, or the driver's
    name; never the DSN, which may hold a password).

    Await the result, or use it with ``async with``, to open the first connection at once;
    otherwise the first statement opens it. Raises TypeError for a driver without ``connect``,
    ValueError for a pool that cannot work (``:memory:`` with ``size`` above 1).
    """
    return Database(driver, args, kwargs, size=size, setup=setup, name=name)


def _execute(cursor: Any, sql: str, params: Params) -> None:
    if params is None:
        cursor.execute(sql)
    else:
        cursor.execute(sql, params)


def _rowcount(connection: Any, sql: str, params: Params) -> int:
    cursor = connection.cursor()
    try:
        _execute(cursor, sql, params)
        return int(cursor.rowcount)
    finally:
        cursor.close()


def _rowcount_many(connection: Any, sql: str, seq_of_params: list[Params]) -> int:
    cursor = connection.cursor()
    try:
        cursor.executemany(sql, seq_of_params)
        return int(cursor.rowcount)
    finally:
        cursor.close()


def _fetch(connection: Any, sql: str, params: Params, every: bool) -> Any:
    cursor = connection.cursor()
    try:
        _execute(cursor, sql, params)
        return cursor.fetchall() if every else cursor.fetchone()
    finally:
        cursor.close()


def _rollback_quietly(thread: ConnectionThread) -> None:
    """Roll back after a failure; a connection that cannot even do that is not lent again."""
    try:
        thread.connection.rollback()
    except Exception:  # noqa: BLE001 -- whatever the driver raised, the connection is done for
        thread.broken = True

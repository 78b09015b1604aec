"""What is particular to SQLite: thread affinity kept, ``:memory:``, autocommit with explicit BEGIN."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

import namewire
import namewire.db


async def test_each_connection_stays_on_the_thread_that_opened_it(tmp_path: Path) -> None:
    opened_on: list[int] = []

    def setup(connection: sqlite3.Connection) -> None:
        opened_on.append(threading.get_ident())
        connection.create_function("thread_id", 0, threading.get_ident)

    async with namewire.db.connect(tmp_path / "a.db", size=3, setup=setup) as db:
        # check_same_thread is left on (sqlite3's default): any use from another thread would
        # raise ProgrammingError instead of answering.
        seen = await asyncio.gather(*(db.fetch_one("SELECT thread_id()") for _ in range(30)))
        threads = {row[0] for row in seen}
        assert threads <= set(opened_on)
        assert len(opened_on) == 3
        assert threading.get_ident() not in threads
        assert await db.run(lambda c: c.isolation_level) is None  # autocommit; BEGIN is explicit


async def test_memory_database_is_one_connection(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="private to one connection"):
        namewire.db.connect(":memory:", size=2)
    async with namewire.db.connect(":memory:") as db:
        assert db.size == 1
        await db.execute("CREATE TABLE t (x)")
        async with db.transaction(begin="BEGIN IMMEDIATE") as tx:
            await tx.executemany("INSERT INTO t VALUES (?)", ((i,) for i in range(5)))
        assert await db.fetch_one("SELECT sum(x) FROM t") == (10,)


async def test_begin_immediate_holds_the_write_lock_from_the_first_read(tmp_path: Path) -> None:
    # A read-modify-write: with BEGIN IMMEDIATE no other connection can write between the read
    # and the write (it waits its busy timeout, here 0.1 s, then fails).
    path = tmp_path / "b.db"
    async with namewire.db.connect(path) as db, namewire.db.connect(path, timeout=0.1) as other:
        await db.execute("CREATE TABLE n (v INTEGER)")
        await db.execute("INSERT INTO n VALUES (1)")
        async with db.transaction(begin="BEGIN IMMEDIATE") as tx:
            (v,) = await tx.fetch_one("SELECT v FROM n")
            with pytest.raises(namewire.DatabaseError, match="database is locked"):
                await other.execute("UPDATE n SET v = 100")
            await tx.execute("UPDATE n SET v = ?", (v + 1,))
        assert await db.fetch_one("SELECT v FROM n") == (2,)

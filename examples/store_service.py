"""A Store service: it owns a SQLite database and answers other services by name.

    namewire nameservice &
    NAMEWIRE_STORE_DB=/tmp/store.db namewire run examples/store_service.py
    namewire call Store put '"greeting"' '"hello"'
    namewire call Store get '"greeting"'             # "hello"
    namewire call Store incr '"visits"'              # 1, 2, 3 ...

Any service reaches it the same way: ``await node.rpc_call("Store", "get", "greeting")``.

The database file is ``$NAMEWIRE_STORE_DB`` (default ``store.db`` in the current directory). It is
in WAL mode, so several processes can serve one file: readers never wait for a writer, writers
take turns (each waits up to sqlite3's 5 s busy timeout), and `incr` reads and writes under
``BEGIN IMMEDIATE`` so two processes never lose an increment. Start a second process with
``--name Store2`` today, or both as one service with ``namewire run --workers 2`` (docs/db.md).
Values are anything JSON can hold; they are stored as JSON text.
"""

import asyncio
import json
import os

import namewire
import namewire.db

node = namewire.Node("Store")


def prepare(connection):
    """Run on every new connection, on its own thread, before its first statement."""
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = NORMAL")  # durable at checkpoints; safe with WAL
    connection.execute(
        "CREATE TABLE IF NOT EXISTS store (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
    )


db = namewire.db.connect(os.environ.get("NAMEWIRE_STORE_DB", "store.db"), setup=prepare)


@node.function
async def put(key, value):
    await db.execute(
        "INSERT INTO store (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, json.dumps(value)),
    )


@node.function(idempotent=True)
async def get(key, default=None):
    row = await db.fetch_one("SELECT value FROM store WHERE key = ?", (key,))
    return default if row is None else json.loads(row[0])


@node.function
async def incr(key, by=1):
    """Add ``by`` to the integer under ``key`` (0 when absent); returns the new value."""
    async with db.transaction(begin="BEGIN IMMEDIATE") as tx:
        row = await tx.fetch_one("SELECT value FROM store WHERE key = ?", (key,))
        current = 0 if row is None else json.loads(row[0])
        if not isinstance(current, int):
            raise TypeError(f"incr({key!r}): the value is a {type(current).__name__}, not an int")
        await tx.execute(
            "INSERT INTO store (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(current + by)),
        )
    return current + by


@node.function
async def delete(key):
    return await db.execute("DELETE FROM store WHERE key = ?", (key,)) > 0


@node.function(idempotent=True)
async def keys(prefix=""):
    rows = await db.fetch_all(
        "SELECT key FROM store WHERE substr(key, 1, ?) = ? ORDER BY key", (len(prefix), prefix)
    )
    return [key for (key,) in rows]


@node.function
def whoami():
    """Which process answered: useful with several instances."""
    return {"name": node.name, "pid": os.getpid(), "database": db.label}


async def main(node):
    await db  # open now: a bad path fails at start, not at the first call
    try:
        await asyncio.Event().wait()  # serve until SIGINT/SIGTERM
    finally:
        await db.close()

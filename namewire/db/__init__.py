"""Asynchronous access to any DB-API 2.0 database: the event loop never waits for the database.

    import namewire.db

    async with namewire.db.connect("app.db") as db:            # sqlite3, a pool of 4
        await db.execute("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT)")
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO kv VALUES (?, ?)", ("a", "1"))
        row = await db.fetch_one("SELECT v FROM kv WHERE k = ?", ("a",))

    db = namewire.db.connect("host=/run/postgresql dbname=app", driver=psycopg)

Each connection lives on a thread of its own (``_thread``), lent by a bounded pool (``_pool``);
what differs between drivers is in one table (``_drivers.PROFILES``). Errors are
`namewire.DatabaseError`, carrying the driver's message and the statement. docs/db.md says when to
use this and when aiosqlite or asyncpg.
"""

from ..errors import DatabaseError
from ._database import Database, Params, Row, Transaction, connect
from ._drivers import PROFILES, DriverProfile
from ._pool import PoolStatistics

__all__ = [
    "PROFILES",
    "Database",
    "DatabaseError",
    "DriverProfile",
    "Params",
    "PoolStatistics",
    "Row",
    "Transaction",
    "connect",
]

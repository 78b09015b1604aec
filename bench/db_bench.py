"""Database benchmark: namewire.db beside aiosqlite (SQLite) and asyncpg (PostgreSQL), in one run.

What it measures, for each system and number of concurrent callers, on a fresh uvloop loop:

* ``queries/s``: point reads (``SELECT v FROM kv WHERE k = ?`` on a 10,000-row table, keys spread
  over the table) completed in the window, divided by the window;
* ``writes/s``: single-row upserts, each its own transaction (SQLite in WAL mode with
  ``synchronous=NORMAL``; PostgreSQL with ``fsync=off``: the cost measured is the client's, not the
  disk's);
* ``CPU/query``: CPU time of this process (the loop and the driver threads; for SQLite the
  database engine too, for PostgreSQL only the client) per query: steadier than queries/s on a
  shared machine;
* ``worst stall`` and ``p99 stall``: a ticker sleeps 1 ms in a loop beside the callers; a tick's
  stall is how much later than 1 ms it woke. The worst is the longest the loop could not run
  anything else while the database was busy.

Systems: ``namewire.db`` with a pool of 1 and of 4 connections (sqlite3 / psycopg 3 on a thread per
connection); ``aiosqlite`` (one connection, one thread: it has no pool); ``asyncpg`` with a pool of
1 and of 4 (a native asyncio protocol, no threads: the reference for what PostgreSQL can do).
PostgreSQL is a throw-away server started here (tests/db/postgres.py: initdb in /tmp, unix socket);
a system or database that is missing becomes a row that says so.

Usage (standalone; ``bench/run.py`` has no section for it yet):

    .venv/bin/python bench/db_bench.py [--seconds S] [--callers 1,16] [--repeat N]
                                       [--only sqlite,postgres] [--json PATH]

Systems run interleaved, one after the other at each point, for ``--repeat`` rounds (default 3);
a row shows its best round's queries/s (all rounds are in the JSON) and the worst stall of any.

Prints a Markdown table; ``--json PATH`` also writes ``{"benchmark": "db", "params": {...},
"results": [{"database", "system", "workload", "callers", "queries", "seconds", "queries_per_s",
"rounds_queries_per_s", "cpu_us_per_query", "worst_stall_ms", "p99_stall_ms"} or {..., "skipped"} or {..., "failed"}]}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import namewire.db

ROWS = 10_000
WARMUP = 0.3
Query = Callable[[int], Awaitable[Any]]


async def measure(query: Query, callers: int, seconds: float) -> dict[str, Any]:
    """Run ``callers`` tasks calling ``query(i)`` back to back beside a 1 ms ticker."""
    done = 0
    counting = False
    stalls: list[float] = []
    running = True

    async def caller(start: int) -> None:
        nonlocal done
        i = start
        while running:
            await query(i)
            i += 7919
            if counting:
                done += 1

    async def ticker() -> None:
        # perf_counter, not loop.time(): uvloop's clock moves in whole milliseconds.
        while running:
            before = time.perf_counter()
            await asyncio.sleep(0.001)
            if counting:
                stalls.append(time.perf_counter() - before - 0.001)

    tasks = [asyncio.create_task(caller(n * 104729)) for n in range(callers)]
    tasks.append(asyncio.create_task(ticker()))
    await asyncio.sleep(WARMUP)
    counting = True
    start, cpu_start = time.perf_counter(), time.process_time()
    await asyncio.sleep(seconds)
    counting = False
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    running = False
    await asyncio.gather(*tasks)
    stalls.sort()
    return {
        "callers": callers,
        "queries": done,
        "seconds": round(elapsed, 3),
        "queries_per_s": round(done / elapsed),
        "cpu_us_per_query": round(cpu / done * 1e6, 1) if done else None,
        "worst_stall_ms": round(stalls[-1] * 1000, 2) if stalls else None,
        "p99_stall_ms": round(stalls[int(len(stalls) * 0.99)] * 1000, 2) if stalls else None,
    }


# --- SQLite --------------------------------------------------------------------------------------


def sqlite_file(directory: Path) -> Path:
    path = directory / "bench.db"
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
        connection.executemany(
            "INSERT INTO kv VALUES (?, ?)", ((i, f"value-{i}") for i in range(ROWS))
        )
    return path


def wal_setup(connection: sqlite3.Connection) -> None:
    connection.execute("PRAGMA synchronous = NORMAL")


async def namewire_sqlite(path: Path, size: int, workload: str, callers: int, seconds: float
                          ) -> dict[str, Any]:
    async with namewire.db.connect(path, size=size, setup=wal_setup) as db:
        if workload == "read":
            return await measure(
                lambda i: db.fetch_one("SELECT v FROM kv WHERE k = ?", (i % ROWS,)),
                callers, seconds,
            )
        return await measure(
            lambda i: db.execute(
                "INSERT INTO kv VALUES (?, 'w') ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                (i % ROWS,),
            ),
            callers, seconds,
        )


async def aiosqlite_run(path: Path, workload: str, callers: int, seconds: float) -> dict[str, Any]:
    import aiosqlite

    async with aiosqlite.connect(path, isolation_level=None) as db:
        await db.execute("PRAGMA synchronous = NORMAL")

        async def read(i: int) -> Any:
            async with db.execute("SELECT v FROM kv WHERE k = ?", (i % ROWS,)) as cursor:
                return await cursor.fetchone()

        async def write(i: int) -> Any:
            await db.execute(
                "INSERT INTO kv VALUES (?, 'w') ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                (i % ROWS,),
            )

        return await measure(read if workload == "read" else write, callers, seconds)


# --- PostgreSQL ----------------------------------------------------------------------------------


def postgres_table(dsn: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT NOT NULL)")
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO kv VALUES (%s, %s)", [(i, f"value-{i}") for i in range(ROWS)]
            )


async def namewire_postgres(dsn: str, size: int, workload: str, callers: int, seconds: float
                            ) -> dict[str, Any]:
    import psycopg

    async with namewire.db.connect(dsn, driver=psycopg, size=size) as db:
        if workload == "read":
            return await measure(
                lambda i: db.fetch_one("SELECT v FROM kv WHERE k = %s", (i % ROWS,)),
                callers, seconds,
            )
        return await measure(
            lambda i: db.execute(
                "INSERT INTO kv VALUES (%s, 'w') ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                (i % ROWS,),
            ),
            callers, seconds,
        )


async def asyncpg_run(socket_dir: str, user: str, size: int, workload: str, callers: int,
                      seconds: float) -> dict[str, Any]:
    import asyncpg

    pool = await asyncpg.create_pool(
        host=socket_dir, user=user, database="postgres", min_size=size, max_size=size
    )
    try:
        if workload == "read":
            return await measure(
                lambda i: pool.fetchrow("SELECT v FROM kv WHERE k = $1", i % ROWS),
                callers, seconds,
            )
        return await measure(
            lambda i: pool.execute(
                "INSERT INTO kv VALUES ($1, 'w') ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                i % ROWS,
            ),
            callers, seconds,
        )
    finally:
        await pool.close()


# --- the run -------------------------------------------------------------------------------------


def on_fresh_loop(coro_fn: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro_fn())  # type: ignore[arg-type]


def missing(module: str) -> str | None:
    try:
        __import__(module)
    except ImportError:
        return f"{module} not installed (pip install -e '.[bench]')"
    return None


Maker = Callable[[str, int], Callable[[], Awaitable[dict[str, Any]]]]


def compare(database: str, systems: list[tuple[str, str | None, Maker]], callers: list[int],
            repeat: int, results: list[dict[str, Any]]) -> None:
    """Every system at every point, interleaved (system after system, ``repeat`` rounds) so that
    a busy moment of the machine hits them alike; each row keeps its best round's queries/s
    and the worst stall seen in any round."""
    for system, why_not, _ in systems:
        if why_not:
            results.append({"database": database, "system": system, "skipped": why_not})
            print(f"{database} {system}: skipped ({why_not})", file=sys.stderr)
    live = [(system, make) for system, why_not, make in systems if not why_not]
    for workload in ("read", "write"):
        for n in callers:
            rounds: dict[str, list[dict[str, Any]]] = {system: [] for system, _ in live}
            for _ in range(repeat):
                for system, make in live:
                    try:
                        rounds[system].append(on_fresh_loop(make(workload, n)))
                    except Exception as exc:  # noqa: BLE001 -- a failing peer is a row; go on
                        rounds[system].append({"failed": f"{type(exc).__name__}: {exc}"})
            for system, _ in live:
                good = [r for r in rounds[system] if "failed" not in r]
                row: dict[str, Any] = {"database": database, "system": system,
                                       "workload": workload, "callers": n}
                if not good:
                    row["failed"] = rounds[system][-1]["failed"]
                else:
                    best = max(good, key=lambda r: r["queries_per_s"])
                    row.update(best)
                    row["rounds_queries_per_s"] = [r["queries_per_s"] for r in good]
                    row["worst_stall_ms"] = max(r["worst_stall_ms"] or 0 for r in good)
                results.append(row)
                print(f"{database} {system} {workload} x{n}: "
                      f"{row.get('rounds_queries_per_s', row.get('failed'))} q/s, worst stall "
                      f"{row.get('worst_stall_ms')} ms", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    callers = [int(c) for c in args.callers.split(",")]
    results: list[dict[str, Any]] = []
    s = args.seconds
    if "sqlite" in args.only:
        with tempfile.TemporaryDirectory(prefix="namewire-dbbench-") as tmp:
            path = sqlite_file(Path(tmp))
            systems: list[tuple[str, str | None, Maker]] = [
                (f"namewire.db (pool {size})", None,
                 lambda w, n, size=size: lambda: namewire_sqlite(path, size, w, n, s))
                for size in (1, 4)
            ]
            systems.append(("aiosqlite (1 connection)", missing("aiosqlite"),
                            lambda w, n: lambda: aiosqlite_run(path, w, n, s)))
            compare("sqlite", systems, callers, args.repeat, results)
    if "postgres" in args.only:
        from tests.db.postgres import USER, PostgresServer, PostgresUnavailable

        server = PostgresServer()
        why = missing("psycopg")
        try:
            if why is None:
                server.start()
                postgres_table(server.dsn)
        except PostgresUnavailable as exc:
            why = str(exc)
        try:
            systems = [
                (f"namewire.db + psycopg (pool {size})", why,
                 lambda w, n, size=size: lambda: namewire_postgres(server.dsn, size, w, n, s))
                for size in (1, 4)
            ]
            systems += [
                (f"asyncpg (pool {size})", why or missing("asyncpg"),
                 lambda w, n, size=size: lambda: asyncpg_run(server.socket_dir, USER, size, w, n, s))
                for size in (1, 4)
            ]
            compare("postgres", systems, callers, args.repeat, results)
        finally:
            server.stop()
    return results


def to_markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "| database | system | workload | callers | queries/s | CPU/query | worst stall | p99 stall |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if "skipped" in r:
            lines.append(f"| {r['database']} | {r['system']} | skipped: {r['skipped']} | | | | | |")
        elif "failed" in r:
            lines.append(f"| {r['database']} | {r['system']} | {r['workload']} | {r['callers']} "
                         f"| failed: {r['failed']} | | | |")
        else:
            lines.append(
                f"| {r['database']} | {r['system']} | {r['workload']} | {r['callers']} "
                f"| {r['queries_per_s']:,} | {r['cpu_us_per_query']} us "
                f"| {r['worst_stall_ms']} ms | {r['p99_stall_ms']} ms |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="window per point (default 3)")
    parser.add_argument("--callers", default="1,16", help="concurrent callers (default 1,16)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per point (default 3)")
    parser.add_argument("--only", default="sqlite,postgres", help="databases (default both)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    results = run(args)
    print(to_markdown(results))
    if args.json:
        params = {"seconds": args.seconds, "callers": args.callers, "repeat": args.repeat,
                  "rows": ROWS, "loop": "uvloop"}
        args.json.write_text(json.dumps(
            {"benchmark": "db", "params": params, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

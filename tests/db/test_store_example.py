"""examples/store_service.py run by ``namewire run`` against a real name service, called by name;
two processes on one SQLite file (WAL) count without losing an increment."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

import namewire
from tests.conftest import ROOT, Processes

pytestmark = [pytest.mark.timeout(60), pytest.mark.uvloop_only]
EXAMPLE = ROOT / "examples" / "store_service.py"


def start_store(procs: Processes, name: str, ns: str, path: Path) -> subprocess.Popen[str]:
    return procs.start(
        "-m", "namewire", "run", str(EXAMPLE), "--name", name, "--nameservice", ns,
        "--log-level", "WARNING", env={"NAMEWIRE_STORE_DB": str(path)},
    )


async def until_serving(node: namewire.Node, name: str, timeout: float = 20.0) -> dict:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await node.rpc_call(name, "whoami", timeout=2)
        except (namewire.NameNotFound, namewire.PeerLost, namewire.CallTimeout):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_store_answers_by_name_and_two_processes_share_the_file(
    procs: Processes, tmp_path: Path
) -> None:
    ns, _ = procs.nameservice()
    path = tmp_path / "store.db"
    stores = [start_store(procs, "Store", ns, path), start_store(procs, "Store2", ns, path)]
    caller = namewire.Node("store-test-caller")
    async with caller.serve(listen=None, nameservice=ns):
        first, second = await until_serving(caller, "Store"), await until_serving(caller, "Store2")
        assert first["pid"] != second["pid"] and first["database"] == str(path)

        await caller.rpc_call("Store", "put", "greeting", {"text": "hello", "n": [1, 2]})
        assert await caller.rpc_call("Store2", "get", "greeting") == {"text": "hello", "n": [1, 2]}
        assert await caller.rpc_call("Store2", "get", "missing", "none") == "none"

        # 2 x 60 increments, interleaved across the two processes: none lost.
        results = await asyncio.gather(
            *(
                caller.rpc_call(name, "incr", "visits")
                for _ in range(60)
                for name in ("Store", "Store2")
            )
        )
        assert sorted(results) == list(range(1, 121))
        assert await caller.rpc_call("Store", "get", "visits") == 120
        assert await caller.rpc_call("Store", "keys", "g") == ["greeting"]

        # A bad request is the caller's error, with the reason; the service carries on.
        with pytest.raises(namewire.RemoteError) as caught:
            await caller.rpc_call("Store", "incr", "greeting")
        assert caught.value.remote_type == "TypeError"
        assert "the value is a dict, not an int" in caught.value.remote_message
        assert await caller.rpc_call("Store", "delete", "greeting") is True
        assert await caller.rpc_call("Store2", "keys") == ["visits"]
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    for store in stores:  # SIGTERM: the service stops, its database is closed, exit status 0
        store.send_signal(signal.SIGTERM)
        assert store.wait(10) == 0, store.stdout.read() if store.stdout else ""

"""A worker can be a Node: it registers with the same name service and is reached by name."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import namewire
from namewire.workers import WorkerChannel, fork

from . import targets

pytestmark = pytest.mark.timeout(40)


@pytest.mark.parametrize("thread", [False, True], ids=["process", "thread"])
async def test_a_worker_node_is_reached_by_name(registry_url: str, thread: bool) -> None:
    ready: WorkerChannel[Any] = WorkerChannel(2)
    name = f"Adder-{'thread' if thread else 'process'}"
    worker = await fork(targets.serve_as_node, name, registry_url, ready, thread=thread)
    try:
        assert await asyncio.wait_for(ready.get(), 15) == "ready"
        me = namewire.Node("tester")
        async with me.serve(nameservice=registry_url):
            assert await me.rpc_call(name, "plus", 2, 3) == 5
            assert await me.rpc_call_any("plus", 20, 1) == 21
            assert await me.get_remote_func_provider("plus") == [name]
            pid = await me.rpc_call(name, "where")
            assert (pid == worker.pid) if not thread else (pid is not None)
        ready.close()  # the worker's serve block ends, the name is deregistered
        assert await asyncio.wait_for(worker.wait(), 10) == 0
    finally:
        await worker.stop()

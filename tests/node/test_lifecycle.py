"""A node's own life in one process: stopping (cancelled or not), and what it leaves behind."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import namewire
from namewire.nameservice import NameService

pytestmark = pytest.mark.timeout(30)


@contextlib.asynccontextmanager
async def nameservice() -> AsyncIterator[str]:
    """A name service in this process, on a free loopback port: its URL."""
    async with NameService().serve("tcp://127.0.0.1:0") as running:
        yield running.address


@contextlib.contextmanager
def loop_reports() -> Iterator[list[dict[str, Any]]]:
    """What reaches the loop's exception handler ("exception was never retrieved" among others)."""
    loop = asyncio.get_running_loop()
    reports: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reports.append(context))
    try:
        yield reports
    finally:
        loop.set_exception_handler(None)


async def test_failed_first_uses_whose_callers_all_left_are_not_reported_as_unretrieved() -> None:
    async with nameservice() as url:
        async with namewire.Node("Caller").serve(nameservice=url, listen=None) as me:
            with loop_reports() as reports:
                for _ in range(3):
                    calls = [asyncio.ensure_future(me.rpc_call("Ghost", "f")) for _ in range(3)]
                    calls.append(asyncio.ensure_future(me.send_msg("Ghost", "boo")))
                    await asyncio.sleep(0)  # the shared look-up + connect is under way
                    for call in calls:
                        call.cancel()
                    await asyncio.gather(*calls, return_exceptions=True)
                    del calls
                    await asyncio.sleep(0.05)  # it fails with NameNotFound, nobody waiting
                gc.collect()
                await asyncio.sleep(0)
            assert [r["message"] for r in reports] == []


async def test_a_cancelled_stop_still_closes_everything_and_a_later_stop_waits_for_it() -> None:
    async with nameservice() as url:
        server = namewire.Node("Server")

        @server.function
        async def slow() -> str:
            await asyncio.sleep(0.5)
            return "done"

        async with namewire.Node("Caller").serve(nameservice=url, listen=None) as caller:
            await server.start(nameservice=url, listen="tcp://127.0.0.1:0", unix=True)
            tcp, unix = server.addresses
            host, port = tcp.removeprefix("tcp://").rsplit(":", 1)
            call = asyncio.ensure_future(caller.rpc_call("Server", "slow"))
            await asyncio.sleep(0.1)  # running in the server

            stopping = asyncio.ensure_future(server.stop(grace=5.0))
            await asyncio.sleep(0.1)  # stop is giving the call in flight its grace
            stopping.cancel()
            with pytest.raises(asyncio.CancelledError):
                await stopping
            second = asyncio.ensure_future(server.stop())
            third = asyncio.ensure_future(server.stop())
            await asyncio.sleep(0.1)
            assert not second.done() and not third.done(), "a later stop returned before the teardown"
            await asyncio.wait_for(asyncio.gather(second, third), 5)

            assert await call == "done"  # the grace of the cancelled stop still held
            assert server.peers == [] and caller.peers == []
            assert server.registry is None and server.addresses == ()
            with pytest.raises(OSError):
                await asyncio.open_connection(host, int(port))
            assert not os.path.exists(unix.removeprefix("unix://"))
            assert caller.registry is not None
            caller.registry.forget("Server")
            with pytest.raises(namewire.NameNotFound):
                await caller.registry.lookup("Server")
            await server.stop()  # stopped: returns at once

            # And it can start again.
            async with server.serve(nameservice=url, unix=False):
                assert await caller.rpc_call("Server", "slow") == "done"

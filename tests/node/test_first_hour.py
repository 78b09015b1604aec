"""A node's start-up and failure reports, in one process with a real name service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import pytest

import namewire
from namewire.nameservice import NameService
from namewire.node._failures import FailureLog

pytestmark = pytest.mark.timeout(30)


@contextlib.asynccontextmanager
async def nameservice() -> AsyncIterator[str]:
    async with NameService().serve("tcp://127.0.0.1:0") as running:
        yield running.address


async def test_a_function_added_while_serving_is_registered_too() -> None:
    async with nameservice() as url:
        server = namewire.Node("Growing")

        @server.function
        def first() -> int:
            return 1

        async with server.serve(nameservice=url, unix=False), \
                namewire.Node("Asker").serve(nameservice=url, listen=None) as asker:
            assert await asker.get_remote_func_provider("later") == []

            @server.function
            def later() -> int:
                return 2

            assert await asker.rpc_call("Growing", "later") == 2  # callable at once
            deadline = time.monotonic() + 5
            while await asker.get_remote_func_provider("later") != ["Growing"]:
                assert time.monotonic() < deadline, "the new function was never registered"
                await asyncio.sleep(0.02)
            assert await asker.get_remote_func_provider("first") == ["Growing"]


async def test_an_unsendable_result_is_logged_by_the_service(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with nameservice() as url:
        server = namewire.Node("Odd")

        @server.function
        def odd() -> object:
            return object()

        with caplog.at_level(logging.ERROR, logger="namewire.node"):
            async with server.serve(nameservice=url, unix=False), \
                    namewire.Node("Asker").serve(nameservice=url, listen=None) as asker:
                with pytest.raises(namewire.RemoteError, match="EncodeError"):
                    await asker.rpc_call("Odd", "odd")
        [record] = [r for r in caplog.records if "'odd'" in r.getMessage()]
        assert "Odd: remote function 'odd' called by 'Asker' returned a result that cannot be sent" \
            in record.getMessage()


def test_failure_records_are_rate_limited_per_function(caplog: pytest.LogCaptureFixture) -> None:
    failures = FailureLog(burst=2, period=0.2)
    with caplog.at_level(logging.ERROR, logger="namewire.node"):
        for _ in range(6):
            failures.failed("Hot", "f", "Caller", ValueError("again"))
        failures.failed("Hot", "g", "Caller", ValueError("other"))  # its own budget
        time.sleep(0.25)
        failures.failed("Hot", "f", "Caller", ValueError("later"))
    messages = [r.getMessage() for r in caplog.records]
    assert [m for m in messages if "'f'" in m and "again" in m] == [
        "Hot: remote function 'f' called by 'Caller' raised ValueError: again"] * 2
    assert any("'g'" in m for m in messages)
    assert messages[-1].endswith(
        "raised ValueError: later (4 more failures of 'f' were not logged in the 0.2s before)")
    assert all(r.exc_info is not None for r in caplog.records)


async def test_start_waits_for_a_name_service_that_comes_up_late() -> None:
    service = NameService()
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    url = f"tcp://127.0.0.1:{port}"

    async def late() -> None:
        await asyncio.sleep(0.5)
        async with service.serve(url):
            await asyncio.sleep(3)

    task = asyncio.ensure_future(late())
    try:
        began = time.monotonic()
        async with namewire.Node("Patient").serve(nameservice=url, unix=False,
                                                  registry_wait=5) as node:
            assert time.monotonic() - began >= 0.4
            assert await node.get_remote_func_provider("nothing") == []
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_debug_logs_connections_look_ups_and_failed_calls(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with nameservice() as url:
        server = namewire.Node("Chatty")

        @server.function
        def nope() -> None:
            raise KeyError("x")

        with caplog.at_level(logging.DEBUG, logger="namewire"):
            async with server.serve(nameservice=url, unix=False), \
                    namewire.Node("Asker").serve(nameservice=url, listen=None) as asker:
                with pytest.raises(namewire.RemoteError):
                    await asker.rpc_call("Chatty", "nope")
        messages = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
        assert any(m.startswith("Asker: looked up 'Chatty': tcp://127.0.0.1:") for m in messages)
        assert any(m.startswith("Chatty: connection with 'Asker' open") for m in messages)
        assert any(m.startswith("Asker: connection with 'Chatty' closed (tcp://") for m in messages)
        assert any("'Asker': call failed" in m and "KeyError" in m for m in messages)

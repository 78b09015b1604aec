"""NameServiceClient against a real name service process: leases, conflicts, look-ups, notices."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import namewire
from namewire.nameservice import NameService
from namewire.node import Caller
from namewire.registry import NameServiceClient, Registration
from tests.conftest import Processes, free_port

pytestmark = pytest.mark.timeout(60)


def registration(name: str, *functions: str) -> Registration:
    return Registration(name=name, addresses=(f"tcp://127.0.0.1:{free_port()}",),
                        functions=functions, idempotent=functions[:1], host="test-host",
                        metadata={"role": "test"})


async def started(url: str, node_name: str, ttl: float = 5.0) -> NameServiceClient:
    client = NameServiceClient(url, node_name=node_name, ttl=ttl)
    await client.start()
    return client


async def test_register_look_up_list_and_deregister(procs: Processes) -> None:
    ns, _ = procs.nameservice()
    owner = await started(ns, "Owner")
    reader = await started(ns, "Reader")
    try:
        mine = registration("Owner", "plus", "minus")
        await owner.register(mine)
        assert await reader.lookup("Owner") == mine
        assert await reader.providers("plus") == ["Owner"]
        assert await reader.providers("times") == []
        [info] = await reader.services()
        assert info.registration == mine and 0 <= info.lease_age < 5 and info.ttl == 5.0
        await owner.deregister()
        await asyncio.sleep(0.1)  # the change notice drops the reader's cached entries
        with pytest.raises(namewire.NameNotFound, match="no service named 'Owner'"):
            await reader.lookup("Owner")
        assert await reader.providers("plus") == []
    finally:
        await owner.close()
        await reader.close()


async def test_a_live_name_cannot_be_taken_and_a_closed_session_frees_it(procs: Processes) -> None:
    ns, _ = procs.nameservice()
    first = await started(ns, "first")
    second = await started(ns, "second")
    try:
        await first.register(registration("Solo", "f"))
        with pytest.raises(namewire.NameTaken, match="'Solo' is held by a live service"):
            await second.register(registration("Solo", "g"))
        await first.close()
        await asyncio.sleep(0.1)
        await second.register(registration("Solo", "g"))
        assert (await second.lookup("Solo")).functions == ("g",)
    finally:
        await first.close()
        await second.close()


async def test_renewals_keep_a_short_lease_alive(procs: Processes) -> None:
    ns, _ = procs.nameservice()
    owner = await started(ns, "Owner", ttl=0.5)
    reader = await started(ns, "Reader")
    try:
        await owner.register(registration("Owner", "f"))
        await asyncio.sleep(2.0)  # four lease lengths
        reader.forget("Owner")
        assert (await reader.lookup("Owner")).name == "Owner"
    finally:
        await owner.close()
        await reader.close()


async def test_a_changed_registration_reaches_readers_at_once(procs: Processes) -> None:
    ns, _ = procs.nameservice()
    owner = await started(ns, "Owner")
    reader = await started(ns, "Reader")
    try:
        await owner.register(registration("Owner", "f"))
        assert (await reader.lookup("Owner")).functions == ("f",)
        await owner.register(registration("Owner", "f", "g"))  # same session: an update
        deadline = time.monotonic() + 2
        while (await reader.lookup("Owner")).functions != ("f", "g"):
            assert time.monotonic() < deadline, "the reader kept a stale registration"
            await asyncio.sleep(0.01)
        assert await reader.providers("g") == ["Owner"]
    finally:
        await owner.close()
        await reader.close()


async def test_the_client_registers_again_after_a_name_service_restart(procs: Processes) -> None:
    port = free_port()
    ns, ns_proc = procs.nameservice(port)
    owner = await started(ns, "Owner", ttl=1.0)
    try:
        await owner.register(registration("Owner", "f"))
        os.kill(ns_proc.pid, signal.SIGKILL)
        ns_proc.wait(5)
        with pytest.raises(namewire.RegistryUnavailable):
            await owner.lookup("Nobody")
        procs.nameservice(port)
        reader = await started(ns, "Reader")
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    assert (await reader.lookup("Owner")).functions == ("f",)
                    break
                except namewire.NameNotFound:
                    assert time.monotonic() < deadline, "Owner never registered again"
                    await asyncio.sleep(0.05)
        finally:
            await reader.close()
    finally:
        await owner.close()


async def test_start_without_a_name_service_names_the_address() -> None:
    url = f"tcp://127.0.0.1:{free_port()}"
    client = NameServiceClient(url, node_name="lonely", connect_timeout=1.0)
    with pytest.raises(namewire.RegistryUnavailable, match=f"cannot reach the name service at {url}"):
        await client.start()


@contextlib.asynccontextmanager
async def nameservice(service: NameService | None = None) -> AsyncIterator[str]:
    """A name service in this process, on a free loopback port: its URL."""
    async with (service or NameService()).serve("tcp://127.0.0.1:0") as running:
        yield running.address


async def test_a_name_service_that_never_says_hello_is_hung_up_on() -> None:
    held: list[asyncio.StreamReader] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(reader)  # accepts, reads nothing, answers nothing

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    url = f"tcp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        client = NameServiceClient(url, node_name="Impatient", connect_timeout=0.3)
        with pytest.raises(namewire.RegistryUnavailable, match="no answer within 0.3s"):
            await client.start()
        [reader] = held
        # The client's hello, then end of stream: the client closed the connection it gave up on.
        await asyncio.wait_for(reader.read(), 2.0)
        assert reader.at_eof()
    finally:
        server.close()


async def test_a_stale_session_closing_keeps_the_caches_of_the_current_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with nameservice() as url:
        owner = await started(url, "Owner")
        reader = await started(url, "Reader")
        try:
            await owner.register(registration("Owner", "f"))
            assert (await reader.lookup("Owner")).name == "Owner"
            assert await reader.providers("f") == ["Owner"]
            # A second, real session to the name service reporting to the same client, which then
            # dies: it is not the client's session, so nothing the client holds is stale.
            stale = await reader._connect()
            with caplog.at_level(logging.WARNING, logger="namewire.registry"):
                stale.abort()
                await stale.wait_closed()
                await asyncio.sleep(0.05)
            assert "Owner" in reader._cache and "f" in reader._providers
            assert not reader._wake.is_set()
            assert "lost the name service" not in caplog.text
            assert reader._session is not None and reader._session.is_open
        finally:
            await owner.close()
            await reader.close()


class BrokenRenewals(NameService):
    """A real name service whose first ``failures`` renewals raise."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.renewals = 0

    def _renew(self, caller: Caller, lease_id: str) -> bool:
        self.renewals += 1
        if self.renewals <= self.failures:
            raise ValueError("renewals are broken today")
        return super()._renew(caller, lease_id)


async def test_a_failing_renewal_is_logged_and_the_keeper_keeps_the_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = BrokenRenewals(failures=3)
    async with nameservice(service) as url:
        owner = namewire.Node("Owner")
        reader = await started(url, "Reader")
        try:
            with caplog.at_level(logging.WARNING, logger="namewire.registry"):
                async with owner.serve(nameservice=url, lease_ttl=0.3, unix=False):
                    await asyncio.sleep(1.5)  # five lease lengths, ten renewal periods
                    assert service.renewals > 5, "the keeper stopped renewing"
                    reader.forget("Owner")
                    assert (await reader.lookup("Owner")).name == "Owner"
                # Leaving the block (Node.stop) did not re-raise anything the keeper met.
            # The client's warnings (the name service logs each failure on its side too).
            failures = [r for r in caplog.records if "renewals are broken today" in r.getMessage()
                        and r.name == "namewire.registry"]
            assert len(failures) == 3
            assert all("'Owner'" in r.getMessage() for r in failures)
        finally:
            await reader.close()


async def test_close_does_not_reraise_what_the_keeper_met() -> None:
    service = BrokenRenewals(failures=1_000_000)
    async with nameservice(service) as url:
        owner = await started(url, "Owner", ttl=0.3)
        await owner.register(registration("Owner", "f"))
        await asyncio.sleep(0.5)
        assert service.renewals >= 2
        await owner.close()


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


async def test_a_failed_look_up_whose_waiters_all_left_is_not_reported_as_unretrieved() -> None:
    async with nameservice() as url:
        reader = await started(url, "Reader")
        try:
            with loop_reports() as reports:
                for _ in range(3):
                    waiters = [asyncio.ensure_future(reader.lookup("Ghost")) for _ in range(3)]
                    await asyncio.sleep(0)  # the shared look-up is on its way
                    for waiter in waiters:
                        waiter.cancel()
                    await asyncio.gather(*waiters, return_exceptions=True)
                    del waiters
                    await asyncio.sleep(0.05)  # its NameNotFound arrives, nobody to take it
                with pytest.raises(namewire.NameNotFound):  # and one with a waiter, for contrast
                    await reader.lookup("Ghost")
                gc.collect()
                await asyncio.sleep(0)
            assert [r["message"] for r in reports] == []
        finally:
            await reader.close()

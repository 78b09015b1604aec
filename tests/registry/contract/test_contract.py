"""The `Registry` contract, run against every backend (built-in name service, real etcd).

Where the backends differ on purpose, the test says so through `Backend`'s fields and checks each.
Changes reach other clients through pushed notices (built-in) or a watch (etcd): "at once" below
means within PROPAGATION seconds, not on the next look-up after a TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time

import pytest

import namewire
from namewire.registry import Registration
from tests.conftest import ROOT, Processes, free_port
from tests.registry.contract.conftest import Backend, eventually

pytestmark = pytest.mark.timeout(60)

PROPAGATION = 2.0


def registration(name: str, *functions: str) -> Registration:
    return Registration(name=name, addresses=(f"tcp://127.0.0.1:{free_port()}",),
                        functions=functions, idempotent=functions[:1], host="test-host",
                        metadata={"role": "test"})


async def gone(registry: namewire.registry.Registry, name: str) -> bool:
    try:
        await registry.lookup(name)
    except namewire.NameNotFound:
        return True
    return False


async def test_register_look_up_list_and_deregister(backend: Backend) -> None:
    owner = await backend.client("Owner")
    reader = await backend.client("Reader")
    try:
        mine = registration("Owner", "plus", "minus")
        await owner.register(mine)
        assert await reader.lookup("Owner") == mine

        async def listed() -> bool:
            return await reader.providers("plus") == ["Owner"]

        await eventually(listed, PROPAGATION, "a new provider reaches another client")
        assert await reader.providers("times") == []
        [info] = await reader.services()
        assert info.registration == mine and 0 <= info.lease_age <= 5 and info.ttl == 5.0
        await owner.deregister()
        await eventually(lambda: gone(reader, "Owner"), PROPAGATION, "a deregistered name leaves")
        with pytest.raises(namewire.NameNotFound, match="no service named 'Owner'"):
            await reader.lookup("Owner")
        assert await reader.providers("plus") == []
    finally:
        await owner.close()
        await reader.close()


async def test_a_live_name_cannot_be_taken_until_its_holder_stops(backend: Backend) -> None:
    first = await backend.client("first")
    second = await backend.client("second")
    try:
        await first.register(registration("Solo", "f"))
        with pytest.raises(namewire.NameTaken, match="'Solo' is held by a live service"):
            await second.register(registration("Solo", "g"))
        await first.close()  # a clean stop gives the name up at once, on every backend
        await second.register(registration("Solo", "g"))
        await eventually(lambda: _functions_are(second, "Solo", ("g",)), PROPAGATION,
                         "the new holder's registration is seen")
    finally:
        await first.close()
        await second.close()


async def _functions_are(registry: namewire.registry.Registry, name: str,
                         functions: tuple[str, ...]) -> bool:
    try:
        return (await registry.lookup(name)).functions == functions
    except namewire.NameNotFound:
        return False


async def test_renewals_keep_a_short_lease_alive(backend: Backend) -> None:
    owner = await backend.client("Owner", ttl=2.0)
    reader = await backend.client("Reader")
    try:
        await owner.register(registration("Owner", "f"))
        await asyncio.sleep(4.2)  # two lease lengths
        reader.forget("Owner")
        assert (await reader.lookup("Owner")).name == "Owner"
        assert await reader.providers("f") == ["Owner"]
    finally:
        await owner.close()
        await reader.close()


async def test_a_changed_registration_reaches_readers(backend: Backend) -> None:
    owner = await backend.client("Owner")
    reader = await backend.client("Reader")
    left: list[str] = []
    reader.name_left = left.append
    try:
        await owner.register(registration("Owner", "f"))
        assert (await reader.lookup("Owner")).functions == ("f",)
        await owner.register(registration("Owner", "f", "g"))  # same holder: an update
        await eventually(lambda: _functions_are(reader, "Owner", ("f", "g")), PROPAGATION,
                         "a changed registration reaches a reader")
        assert await reader.providers("g") == ["Owner"]
        assert left == []  # an update is not a departure
        await owner.deregister()
        await eventually(lambda: _true(left == ["Owner"]), PROPAGATION, "name_left is called")
    finally:
        await owner.close()
        await reader.close()


async def _true(value: bool) -> bool:
    return value


def _holder(procs: Processes, backend: Backend, name: str, ttl: float) -> subprocess.Popen[str]:
    return procs.service("worker.py", name, backend.url, "--lease-ttl", str(ttl), "--no-unix")


async def test_a_killed_holder_frees_its_name_at_once_or_within_its_ttl(
    backend: Backend, procs: Processes
) -> None:
    """The backends differ here: the built-in name service frees a name the moment its holder's
    session closes; etcd only when the lease runs out, within one TTL (it cannot see a socket)."""
    ttl = 2.0
    holder = _holder(procs, backend, "Held", ttl)
    client = await backend.client("Taker")
    try:
        await eventually(lambda: _not(gone(client, "Held")), 10, "the holder registers")
        holder.send_signal(signal.SIGKILL)
        holder.wait(5)
        killed = time.monotonic()
        if backend.releases_on_close:
            await eventually(lambda: gone(client, "Held"), 0.5, "the name leaves at once")
        else:
            with pytest.raises(namewire.NameTaken):
                await client.register(registration("Held", "f"))
            await eventually(lambda: gone(client, "Held"), ttl + PROPAGATION,
                             "the name leaves within its TTL")
            assert time.monotonic() - killed > ttl / 2, "left long before its lease could end"
        await client.register(registration("Held", "f"))
    finally:
        await client.close()


async def _not(check: object) -> bool:
    assert asyncio.iscoroutine(check)
    return not await check


async def test_nodes_reach_each_other_by_name(backend: Backend, procs: Processes) -> None:
    """The four functions through either registry: a call, a message each way, providers."""
    worker = _holder(procs, backend, "Worker", 3.0)
    node = namewire.Node("Caller")
    try:
        async with node.serve(nameservice=backend.url, unix=False, lease_ttl=3.0):
            async def registered() -> bool:
                return await node.get_remote_func_provider("plus") == ["Worker"]

            await eventually(registered, 10, "the worker registers")
            assert await node.rpc_call("Worker", "plus", 2, 3) == 5
            await node.send_msg("Worker", "hello")
            sender, msg = await asyncio.wait_for(node.get_msg(), 5)
            assert (sender, msg) == ("Worker", {"from": "Worker", "echo": "hello"})
    finally:
        worker.kill()


async def test_a_name_that_comes_back_is_reached_at_its_new_holder(
    backend: Backend, procs: Processes
) -> None:
    """A caller's route to the old holder (older epoch) is dropped: the next call goes to the new."""
    node = namewire.Node("Caller")
    async with node.serve(nameservice=backend.url, listen=None, lease_ttl=3.0):
        first = _holder(procs, backend, "Worker", 3.0)
        await eventually(lambda: _not(gone(node.registry, "Worker")), 10, "first holder")  # type: ignore[arg-type]
        old = await node.rpc_call("Worker", "whoami")
        first.terminate()  # clean stop: deregisters (etcd: revokes) at once
        first.wait(10)
        second = _holder(procs, backend, "Worker", 3.0)

        async def moved() -> bool:
            try:
                return (await node.rpc_call("Worker", "whoami", timeout=2))["pid"] != old["pid"]
            except (namewire.NameNotFound, namewire.PeerLost):
                return False

        await eventually(moved, 10, "calls reach the new holder")
        second.kill()


async def test_namewire_ls_lists_the_live_services(backend: Backend, procs: Processes) -> None:
    worker = _holder(procs, backend, "Worker", 3.0)
    client = await backend.client("Probe")
    try:
        await eventually(lambda: _not(gone(client, "Worker")), 10, "the worker registers")
        out = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "namewire", "ls", "--nameservice", backend.url, "--json"],
            capture_output=True, text=True, timeout=30, cwd=ROOT,
        )
        assert out.returncode == 0, out.stderr
        [row] = json.loads(out.stdout)
        assert row["name"] == "Worker" and "plus" in row["functions"] and row["ttl"] == 3.0
        assert 0 <= row["lease_age"] <= 3.0
    finally:
        await client.close()
        worker.kill()


async def test_while_the_registry_is_down(backend: Backend) -> None:
    """Names looked up before are answered on every backend; etcd also answers the rest from its
    view and says it is degraded; when the registry is back, look-ups work again by themselves."""
    owner = await backend.client("Owner")
    other = await backend.client("Other")
    reader = await backend.client("Reader")
    try:
        await owner.register(registration("Owner", "f"))
        await other.register(registration("Other", "g"))
        assert (await reader.lookup("Owner")).name == "Owner"
        await eventually(lambda: _true(reader.degraded is None), 1, "live before the outage")
        if backend.answers_from_view:
            # Its watch event may still be on its way: the view must hold Other before the outage.
            await eventually(lambda: _listed(reader, "Other"), 5, "Other in the reader's view")
        with backend.down():
            assert (await reader.lookup("Owner")).name == "Owner"
            if backend.answers_from_view:
                assert (await reader.lookup("Other")).name == "Other"  # never asked for before
                await eventually(lambda: _true(reader.degraded is not None), 5, "degraded")
            else:
                await eventually(lambda: _unavailable(reader, "Other"), 5,
                                 "an uncached look-up says the registry is unavailable")
        await eventually(lambda: _found(reader, "Other"), 10, "look-ups work again")
        await eventually(lambda: _true(reader.degraded is None), 10, "no longer degraded")
    finally:
        for registry in (owner, other, reader):
            await registry.close()


async def _found(registry: namewire.registry.Registry, name: str) -> bool:
    try:
        return (await registry.lookup(name)).name == name
    except (namewire.NameNotFound, namewire.RegistryUnavailable):
        return False


async def _listed(registry: namewire.registry.Registry, name: str) -> bool:
    return name in [info.registration.name for info in await registry.services()]


async def _unavailable(registry: namewire.registry.Registry, name: str) -> bool:
    try:
        await registry.lookup(name)
    except namewire.RegistryUnavailable:
        return True
    return False


async def test_carried_names_live_with_their_carrier(backend: Backend) -> None:
    """A carried name (a gateway's browser session) is listed with ``via``, refused to anyone but
    its carrier, leaves when dropped without taking the carrier's own name, and leaves with the
    carrier's registration."""
    carrier = await backend.client("Gw")
    other = await backend.client("Other")
    reader = await backend.client("Reader")
    try:
        with pytest.raises(ValueError, match="can be carried only by the node registered as 'Gw'"):
            await carrier.register_carried(Registration(name="Gw/1", via="Gw"))  # not yet
        await carrier.register(registration("Gw", "deliver"))
        await other.register(registration("Other"))
        first = Registration(name="Gw/1", via="Gw")
        await carrier.register_carried(first)
        await carrier.register_carried(Registration(name="Gw/2", via="Gw"))
        assert await reader.lookup("Gw/1") == first
        with pytest.raises(ValueError, match="not by 'Other'"):
            await other.register_carried(Registration(name="Gw/3", via="Gw"))
        with pytest.raises(ValueError, match="reached only through 'Gw', by message"):
            await carrier.register_carried(Registration(name="Gw/3", via="Gw",
                                                        addresses=("tcp://127.0.0.1:1",)))
        with pytest.raises(namewire.NameTaken):
            await other.register(Registration(name="Gw/1"))
        listed = {info.registration.name: info for info in await reader.services()}
        assert listed["Gw/1"].registration.via == "Gw" and listed["Gw/1"].ttl == 5.0
        await carrier.deregister_carried("Gw/1")
        await eventually(lambda: gone(reader, "Gw/1"), PROPAGATION, "a dropped name leaves")
        await asyncio.sleep(0.3)  # the carrier's own name and its other carried one stay
        assert (await reader.lookup("Gw")).functions == ("deliver",)
        assert (await reader.lookup("Gw/2")).via == "Gw"
        with backend.down():  # built-in: a new name service, to which the carrier brings it again
            await asyncio.sleep(0.2)

        async def carried_again() -> bool:
            with contextlib.suppress(namewire.NamewireError):
                return (await reader.lookup("Gw/2")).via == "Gw"
            return False

        await eventually(carried_again, 10, "the carried name is registered again after the outage")
        await carrier.close()
        await eventually(lambda: gone(reader, "Gw/2"), PROPAGATION,
                         "a carried name leaves with its carrier")
        await other.register(Registration(name="Gw/2"))  # free for anyone now
    finally:
        for client in (carrier, other, reader):
            await client.close()

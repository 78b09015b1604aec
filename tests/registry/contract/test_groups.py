"""Groups in the `Registry` contract (docs/workers.md, "Groups in the registry"), on every backend.

A member registers under its own name with ``Registration.group`` set; ``members(group)`` lists
the live members sorted by name, a member leaves with its own name, and a group is not a name.
How fast a killed member leaves is where the backends differ, as for any name (`Backend`).
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

import namewire
from namewire.registry import Registration, Registry
from tests.conftest import APPS, Processes
from tests.registry.contract.conftest import Backend, eventually
from tests.registry.contract.test_contract import PROPAGATION, gone

pytestmark = pytest.mark.timeout(60)


def member(name: str, group: str) -> Registration:
    return Registration(name=name, addresses=("tcp://127.0.0.1:1",), functions=("plus",),
                        host="test-host", group=group, metadata={"role": "member"})


async def members_are(registry: Registry, group: str, names: list[str]) -> bool:
    return [m.name for m in await registry.members(group)] == names


async def test_members_are_listed_and_a_group_is_not_a_name(backend: Backend) -> None:
    clients = [await backend.client(n) for n in ("Pool/1", "Pool/2", "Loner", "Reader")]
    one, two, loner, reader = clients
    try:
        await two.register(member("Pool/2", "Pool"))
        await one.register(member("Pool/1", "Pool"))
        await loner.register(member("Loner", ""))
        await eventually(lambda: members_are(reader, "Pool", ["Pool/1", "Pool/2"]), PROPAGATION,
                         "both members are listed")
        assert await reader.members("Pool") == [member("Pool/1", "Pool"), member("Pool/2", "Pool")]
        assert await reader.members("Loner") == []  # a service without a group is not one
        assert await reader.members("Nobody") == []
        with pytest.raises(namewire.NameNotFound):
            await reader.lookup("Pool")  # a group is not a name
        assert await reader.lookup("Pool/2") == member("Pool/2", "Pool")  # a member is one
        assert await reader.providers("plus") == ["Loner", "Pool/1", "Pool/2"]
    finally:
        for client in clients:
            await client.close()


async def test_a_reader_sees_members_join_and_leave(backend: Backend) -> None:
    """The reader asked first (the built-in client caches the answer): a join and a clean leave
    must reach it by the backend's change notices or watch, not by asking again later."""
    reader = await backend.client("Reader")
    one = await backend.client("Pool/1")
    two = await backend.client("Pool/2")
    try:
        assert await reader.members("Pool") == []
        await one.register(member("Pool/1", "Pool"))
        await eventually(lambda: members_are(reader, "Pool", ["Pool/1"]), PROPAGATION,
                         "a first member joins")
        await two.register(member("Pool/2", "Pool"))
        await eventually(lambda: members_are(reader, "Pool", ["Pool/1", "Pool/2"]), PROPAGATION,
                         "a second member joins")
        await one.deregister()  # a clean leave is seen at once on every backend
        await eventually(lambda: members_are(reader, "Pool", ["Pool/2"]), PROPAGATION,
                         "a deregistered member leaves")
        await two.close()
        await eventually(lambda: members_are(reader, "Pool", []), PROPAGATION,
                         "a closed member leaves")
        await one.register(member("Pool/1", "Other"))  # the same name in another group
        await eventually(lambda: members_are(reader, "Other", ["Pool/1"]), PROPAGATION,
                         "a member of another group")
        assert await reader.members("Pool") == []
    finally:
        for client in (reader, one, two):
            await client.close()


async def test_a_killed_member_leaves_at_once_or_within_its_ttl(
    backend: Backend, procs: Processes
) -> None:
    """As for any name: the built-in name service drops a member when its session closes; etcd
    when its lease runs out (kill -9 revokes nothing)."""
    ttl = 2.0
    reader = await backend.client("Reader")
    stay = await backend.client("Pool/2")
    victim = procs.start(str(APPS / "registry_member.py"), backend.url, "Pool/1", "Pool", str(ttl))
    try:
        await stay.register(member("Pool/2", "Pool"))
        assert victim.stdout is not None
        said = await asyncio.to_thread(victim.stdout.readline)
        assert said.strip() == "registered", f"the member did not register: {said!r}"
        await eventually(lambda: members_are(reader, "Pool", ["Pool/1", "Pool/2"]), PROPAGATION,
                         "both members are listed")
        victim.send_signal(signal.SIGKILL)
        victim.wait(5)
        killed = time.monotonic()
        if backend.releases_on_close:
            await eventually(lambda: members_are(reader, "Pool", ["Pool/2"]), 0.5,
                             "the killed member leaves at once")
        else:
            await eventually(lambda: members_are(reader, "Pool", ["Pool/2"]), ttl + PROPAGATION,
                             "the killed member leaves within its TTL")
            assert time.monotonic() - killed > ttl / 2, "left long before its lease could end"
        assert await gone(reader, "Pool/1")
    finally:
        await reader.close()
        await stay.close()


async def test_a_group_outlives_an_outage_of_the_registry(backend: Backend) -> None:
    """etcd answers members from its view while it is down, as it answers look-ups; on every
    backend the members are listed again once the registry is back (the built-in name service
    restarts empty: its members register again by themselves)."""
    one = await backend.client("Pool/1")
    two = await backend.client("Pool/2")
    reader = await backend.client("Reader")
    both = [member("Pool/1", "Pool"), member("Pool/2", "Pool")]
    try:
        await one.register(both[0])
        await two.register(both[1])
        await eventually(lambda: members_are(reader, "Pool", ["Pool/1", "Pool/2"]), PROPAGATION,
                         "both members are listed")
        with backend.down():
            if backend.answers_from_view:
                assert await reader.members("Pool") == both

        async def listed_again() -> bool:
            try:
                return await reader.members("Pool") == both
            except namewire.RegistryUnavailable:
                return False

        await eventually(listed_again, 10, "the members are listed after the outage")
    finally:
        for client in (one, two, reader):
            await client.close()

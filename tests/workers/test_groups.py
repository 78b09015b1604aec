"""``namewire run APP --workers N``: one service on many cores, reached by its group name."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import time
from typing import Any

import pytest

import namewire
from namewire.registry import Registration

from ..conftest import APPS, Processes
from .conftest import process_alive

pytestmark = pytest.mark.timeout(60)


async def wait_members(node: namewire.Node, group: str, count: int,
                       timeout: float = 20.0) -> list[Registration]:
    assert node.registry is not None
    deadline = time.monotonic() + timeout
    while True:
        members = await node.registry.members(group)
        if len(members) == count:
            return members
        assert time.monotonic() < deadline, f"{group}: {len(members)} members, not {count}"
        await asyncio.sleep(0.05)


def start_group(procs: Processes, registry_url: str, count: int) -> Any:
    return procs.start(
        "-m", "namewire", "run", str(APPS / "group_member.py"), "--name", "Counter",
        "--workers", str(count), "--nameservice", registry_url, "--log-level", "WARNING",
        "--lease-ttl", "3",  # etcd: a killed member's name is free again within 3 s
    )


async def test_a_group_spreads_calls_keeps_messages_with_one_member_and_survives_a_kill(
    procs: Processes, each_registry_url: str
) -> None:
    start_group(procs, each_registry_url, 2)
    me = namewire.Node("tester")
    async with me.serve(nameservice=each_registry_url):
        members = await wait_members(me, "Counter", 2)
        assert [m.name for m in members] == ["Counter/1", "Counter/2"]
        assert {m.group for m in members} == {"Counter"}
        assert await me.get_remote_func_provider("plus") == ["Counter/1", "Counter/2"]

        # Sequential calls rotate between idle members; both routes are open afterwards.
        seen = {(await me.rpc_call("Counter", "whoami"))["name"] for _ in range(6)}
        assert seen == {"Counter/1", "Counter/2"}
        who = await me.rpc_call("Counter/2", "whoami")  # each instance by its own name too
        assert who == {"name": "Counter/2", "group": "Counter", "pid": who["pid"]}

        # Concurrent calls go to the least loaded member.
        names = await asyncio.gather(*(me.rpc_call("Counter", "slow", 0.3) for _ in range(4)))
        assert collections.Counter(names) == {"Counter/1": 2, "Counter/2": 2}

        # Messages from one sender stay with one member, in order.
        for i in range(50):
            await me.send_msg("Counter", i)
        deadline = time.monotonic() + 10
        while True:  # the app's main takes them from the mailbox in its own task
            got = [await me.rpc_call(f"Counter/{k}", "messages") for k in (1, 2)]
            if sum(map(len, got)) >= 50 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        assert sorted(len(g) for g in got) == [0, 50]
        assert [msg for _, msg in got[0] + got[1]] == list(range(50))
        assert {sender for sender, _ in got[0] + got[1]} == {"tester"}

        # kill -9 one member: calls issued after it is gone all succeed on the other one.
        victim = await me.rpc_call("Counter/1", "whoami")
        os.kill(victim["pid"], signal.SIGKILL)
        await _until_gone(victim["pid"])
        await asyncio.sleep(0.1)  # the broken connection is seen by this node's loop
        results = await asyncio.gather(*(me.rpc_call("Counter", "plus", i, 1) for i in range(100)))
        assert results == [i + 1 for i in range(100)]
        # The supervisor in `namewire run` starts it again under the same name (on etcd, once
        # the killed one's lease has ended: until then its key still lists it).
        deadline = time.monotonic() + 30
        while victim["pid"] in {m.pid for m in await wait_members(me, "Counter", 2)}:
            assert time.monotonic() < deadline, "Counter/1 was not started again"
            await asyncio.sleep(0.1)
        again = await me.rpc_call("Counter/1", "whoami")
        assert again["pid"] != victim["pid"]


async def _until_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while process_alive(pid):
        assert time.monotonic() < deadline, f"{pid} did not die"
        await asyncio.sleep(0.02)


async def test_a_group_with_no_member_left_is_name_not_found(
    procs: Processes, each_registry_url: str
) -> None:
    me = namewire.Node("tester")
    async with me.serve(nameservice=each_registry_url):
        with pytest.raises(namewire.NameNotFound):
            await me.rpc_call("Nobody", "plus", 1, 2)
        member = namewire.Node("Solo/1")
        member.group = "Solo"

        @member.function
        def plus(a: int, b: int) -> int:
            return a + b

        async with member.serve(nameservice=each_registry_url):
            [solo] = await wait_members(me, "Solo", 1)
            assert (solo.name, solo.group) == ("Solo/1", "Solo")
            assert me.registry is not None
            with pytest.raises(namewire.NameNotFound):
                await me.registry.lookup("Solo")  # a group is not a name (the contract, point 3)
            assert await me.rpc_call("Solo", "plus", 1, 2) == 3
            await me.send_msg("Solo", "hello")
            assert await member.get_msg() == ("tester", "hello")
        await wait_members(me, "Solo", 0)
        with pytest.raises(namewire.NameNotFound, match="no live member|not"):
            await me.rpc_call("Solo", "plus", 1, 2)

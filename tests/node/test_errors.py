"""The errors a user gets from `Node.rpc_call` carry their facts as attributes, and say them."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

import namewire
from namewire.registry import NameServiceClient, Registration
from tests.conftest import Processes, free_port
from tests.node.test_by_name import client, cluster

pytestmark = pytest.mark.timeout(60)


async def test_rpc_call_errors_carry_peer_function_timeout_and_name(procs: Processes) -> None:
    async with cluster(procs, "A") as (me, workers):
        assert isinstance(me.registry, NameServiceClient)
        ns = me.registry.url

        with pytest.raises(namewire.NameNotFound) as no_name:
            await me.rpc_call("Ghost", "plus", 1, 2)
        assert (no_name.value.name, no_name.value.registry) == ("Ghost", ns)
        assert str(no_name.value) == f"no service named 'Ghost' (name service {ns})"

        with pytest.raises(namewire.NoSuchFunction) as no_function:
            await me.rpc_call("A", "minus", 1, 2)
        assert (no_function.value.peer, no_function.value.function) == ("A", "minus")
        assert str(no_function.value).startswith("rpc_call('A', 'minus'): 'A' has no function 'minus'")

        with pytest.raises(namewire.RemoteError) as failed:
            await me.rpc_call("A", "fail", "bad input")
        error = failed.value
        assert (error.peer, error.function) == ("A", "fail")
        assert (error.remote_type, error.remote_message) == ("ValueError", "bad input")
        assert str(error) == "rpc_call('A', 'fail'): ValueError: bad input"

        with pytest.raises(namewire.CallTimeout) as late:
            await me.rpc_call("A", "sleep_then", 5, "late", timeout=0.2)
        assert (late.value.peer, late.value.function, late.value.timeout) == ("A", "sleep_then", 0.2)
        assert not late.value.inherited
        assert str(late.value) == "rpc_call('A', 'sleep_then'): no answer within 0.2s"

        call = asyncio.ensure_future(me.rpc_call("A", "sleep_then", 30, "never"))
        await asyncio.sleep(0.3)
        os.kill(workers["A"].pid, signal.SIGKILL)
        with pytest.raises(namewire.PeerLost) as lost:
            await asyncio.wait_for(call, 5)
        assert (lost.value.peer, lost.value.function) == ("A", "sleep_then")
        assert lost.value.operation == "rpc_call"
        assert lost.value.address is not None and lost.value.address.startswith(("unix://", "tcp://"))
        assert str(lost.value).startswith("rpc_call('A', 'sleep_then'): peer lost (")


async def test_an_unreachable_registered_name_is_peer_lost_on_connect(procs: Processes) -> None:
    ns, _ = procs.nameservice()
    dead = f"tcp://127.0.0.1:{free_port()}"  # registered, but nobody listens there
    owner = NameServiceClient(ns, node_name="Owner")
    await owner.start()
    try:
        await owner.register(Registration(name="Dead", addresses=(dead,), functions=("f",)))
        async with client().serve(nameservice=ns, listen=None) as me:
            with pytest.raises(namewire.PeerLost) as lost:
                await me.rpc_call("Dead", "f")
        assert (lost.value.peer, lost.value.operation) == ("Dead", "connect")
        assert dead in lost.value.reason
        assert str(lost.value).startswith(f"cannot reach 'Dead': {dead}: ")
    finally:
        await owner.close()


async def test_rpc_call_any_errors_name_the_function(procs: Processes) -> None:
    async with cluster(procs, "A") as (me, workers):
        with pytest.raises(namewire.NoSuchFunction) as nobody:
            await me.rpc_call_any("nobody_has_this")
        assert (nobody.value.peer, nobody.value.function) == (None, "nobody_has_this")
        assert nobody.value.operation == "rpc_call_any"
        assert str(nobody.value) == "rpc_call_any('nobody_has_this'): no live service provides it"

        call = asyncio.ensure_future(me.rpc_call_any("sleep_then", 30, "x"))
        await asyncio.sleep(0.3)
        os.kill(workers["A"].pid, signal.SIGKILL)
        with pytest.raises(namewire.PeerLost) as lost:
            await asyncio.wait_for(call, 5)
        assert (lost.value.peer, lost.value.function) == ("A", "sleep_then")


async def test_calls_to_its_own_name_raise_the_errors_a_remote_call_would(
    procs: Processes,
) -> None:
    ns, _ = procs.nameservice()
    me = client("Self")

    @me.function
    def plus(a, b):
        return a + b

    @me.function
    async def slow(seconds):
        await asyncio.sleep(seconds)

    async with me.serve(nameservice=ns):
        with pytest.raises(namewire.NoSuchFunction) as missing:
            await me.rpc_call("Self", "minus")
        assert (missing.value.peer, missing.value.function) == ("Self", "minus")
        assert missing.value.provided == ("plus", "slow")
        assert str(missing.value) == (
            "rpc_call('Self', 'minus'): 'Self' has no function 'minus' (it provides: plus, slow)"
        )
        with pytest.raises(namewire.RemoteError) as failed:
            await me.rpc_call("Self", "plus", 1, "x")
        assert (failed.value.peer, failed.value.function) == ("Self", "plus")
        assert failed.value.remote_type == "TypeError"
        assert "in plus" in failed.value.remote_traceback
        with pytest.raises(namewire.CallTimeout) as late:
            await me.rpc_call("Self", "slow", 5, timeout=0.1)
        assert (late.value.peer, late.value.function, late.value.timeout) == ("Self", "slow", 0.1)


async def test_a_standalone_node_says_which_name_it_cannot_resolve() -> None:
    async with client().serve(standalone=True, unix=False) as me:
        with pytest.raises(namewire.NameNotFound) as missing:
            await me.rpc_call("Elsewhere", "f")
        assert missing.value.name == "Elsewhere"
        assert str(missing.value) == (
            "no connection to 'Elsewhere' and node 'tester' has no name service to ask"
        )

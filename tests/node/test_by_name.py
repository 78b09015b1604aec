"""Services by name across real processes: a name service, worker services, and this test's node."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator

import pytest

import namewire
from namewire.registry import NameServiceClient, Registration
from tests.conftest import Processes, free_port

pytestmark = pytest.mark.timeout(60)


async def wait_for_name(node: namewire.Node, name: str, timeout: float = 10.0) -> Registration:
    assert node.registry is not None
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await node.registry.lookup(name)
        except namewire.NameNotFound:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05) -> float:
    """Poll an async predicate; return the seconds it took."""
    start = time.monotonic()
    while not await predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
    return time.monotonic() - start


def client(name: str = "tester", **kwargs) -> namewire.Node:
    return namewire.Node(name, **kwargs)


@contextlib.asynccontextmanager
async def cluster(
    procs: Processes, *names: str, listen: str | None = None
) -> AsyncIterator[tuple[namewire.Node, dict[str, subprocess.Popen[str]]]]:
    """A name service, a worker process per name, and this test's node once all are registered."""
    ns, _ = procs.nameservice()
    workers = {name: procs.service("worker.py", name, ns) for name in names}
    me = client()
    async with me.serve(nameservice=ns, listen=listen):
        for name in names:
            await wait_for_name(me, name)
        yield me, workers


async def test_calls_and_messages_by_name_both_ways(procs: Processes) -> None:
    ns, _ = procs.nameservice()
    procs.service("worker.py", "A", ns)
    procs.service("worker.py", "B", ns)
    me = client()
    async with me.serve(nameservice=ns):
        await wait_for_name(me, "A")
        await wait_for_name(me, "B")
        assert await me.rpc_call("A", "plus", 1, 2) == 3
        # A calls B by name on our behalf, and B calls us back by name.
        assert await me.rpc_call("A", "call_back", "B", "plus", 20, 22) == 42
        me.function(lambda: "pong", name="ping")
        await me.send_msg("A", "hello")
        assert await asyncio.wait_for(me.get_msg(), 5) == ("A", {"from": "A", "echo": "hello"})
        assert await me.get_remote_func_provider("plus") == ["A", "B"]
        assert await me.get_remote_func_provider("nothing") == []


async def test_a_caller_that_does_not_listen_gets_replies_and_messages(procs: Processes) -> None:
    async with cluster(procs, "A") as (me, _):
        assert me.addresses == ()
        assert await me.rpc_call("A", "plus", 2, 2) == 4
        await me.send_msg("A", [1, 2])
        assert await asyncio.wait_for(me.get_msg(), 5) == ("A", {"from": "A", "echo": [1, 2]})


async def test_100000_messages_arrive_complete_and_in_order(procs: Processes) -> None:
    ns, _ = procs.nameservice()
    procs.service("worker.py", "A", ns)
    me = client(mailbox_size=1000)
    count = 100_000
    async with me.serve(nameservice=ns, listen=None):
        await wait_for_name(me, "A")

        async def send_all() -> None:
            for i in range(count):
                await me.send_msg("A", i)

        sender = asyncio.ensure_future(send_all())
        received = []
        for _ in range(count):
            peer, msg = await asyncio.wait_for(me.get_msg(), 10)
            assert peer == "A"
            received.append(msg["echo"])
        await sender
    assert received == list(range(count))


async def test_unknown_name_unknown_function_and_remote_errors(procs: Processes) -> None:
    async with cluster(procs, "A") as (me, _):
        with pytest.raises(namewire.NameNotFound, match="no service named 'Ghost'"):
            await me.rpc_call("Ghost", "plus", 1, 2)
        with pytest.raises(namewire.NameNotFound, match="Ghost"):
            await me.send_msg("Ghost", "boo")
        with pytest.raises(namewire.NoSuchFunction) as missing:
            await me.rpc_call("A", "minus", 1, 2)
        assert "'A' has no function 'minus'" in str(missing.value)
        with pytest.raises(namewire.RemoteError) as failed:
            await me.rpc_call("A", "fail", "bad input")
        assert failed.value.remote_type == "ValueError"
        assert failed.value.remote_message == "bad input"
        assert "in fail" in failed.value.remote_traceback
        with pytest.raises(namewire.RemoteError, match="TypeError"):
            await me.rpc_call("A", "plus", 1)
        with pytest.raises(namewire.CallTimeout, match=r"rpc_call\('A', 'sleep_then'\)"):
            await me.rpc_call("A", "sleep_then", 5, "late", timeout=0.2)
        # The connection survives all of that.
        assert await me.rpc_call("A", "plus", 1, 1) == 2


async def test_kill_9_mid_call_fails_pending_calls_within_1s(procs: Processes) -> None:
    async with cluster(procs, "A") as (me, workers):
        worker = workers["A"]
        calls = [asyncio.ensure_future(me.rpc_call("A", "sleep_then", 30, i)) for i in range(10)]
        await asyncio.sleep(0.3)
        killed = time.monotonic()
        os.kill(worker.pid, signal.SIGKILL)
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 5)
        detected = time.monotonic() - killed
        assert all(isinstance(r, namewire.PeerLost) for r in results), results
        assert "peer lost" in str(results[0])
        assert detected < 1.0, f"pending calls failed {detected:.3f}s after kill -9"


async def test_restart_under_the_same_name_callers_recover(procs: Processes) -> None:
    ns, _ = procs.nameservice()
    first = procs.service("worker.py", "A", ns)
    me = client()
    async with me.serve(nameservice=ns, listen=None):
        await wait_for_name(me, "A")
        assert (await me.rpc_call("A", "whoami"))["pid"] == first.pid
        os.kill(first.pid, signal.SIGKILL)
        first.wait(5)
        second = procs.service("worker.py", "A", ns)

        async def answered_by_second() -> bool:
            try:
                return bool((await me.rpc_call("A", "whoami"))["pid"] == second.pid)
            except (namewire.NameNotFound, namewire.PeerLost):
                return False

        await wait_until(answered_by_second, timeout=15)


async def test_name_service_restart_nodes_reregister_and_peers_keep_working(
    procs: Processes,
) -> None:
    port = free_port()
    ns, ns_proc = procs.nameservice(port)
    procs.service("worker.py", "A", ns)
    me = client()
    async with me.serve(nameservice=ns, listen=None):
        await wait_for_name(me, "A")
        assert await me.rpc_call("A", "plus", 1, 2) == 3
        os.kill(ns_proc.pid, signal.SIGKILL)
        ns_proc.wait(5)
        # Peer-to-peer connections do not need the name service.
        for i in range(20):
            assert await me.rpc_call("A", "plus", i, 1) == i + 1
            await asyncio.sleep(0.02)
        procs.nameservice(port)

        async def a_is_back() -> bool:
            fresh = NameServiceClient(ns, node_name="probe")
            try:
                await fresh.start()
                await fresh.lookup("A")
                return True
            except (namewire.NameNotFound, namewire.RegistryUnavailable):
                return False
            finally:
                await fresh.close()

        await wait_until(a_is_back, timeout=15)

        async def we_are_back() -> bool:
            # Our own registry client reconnects on its backoff (at most 0.75 s apart).
            try:
                return await me.get_remote_func_provider("plus") == ["A"]
            except namewire.RegistryUnavailable:
                return False

        await wait_until(we_are_back, timeout=10)
        assert await me.rpc_call("A", "plus", 2, 2) == 4


async def test_two_processes_racing_for_one_name(procs: Processes) -> None:
    ns, _ = procs.nameservice()
    racers = [procs.service("worker.py", "Solo", ns, "--lease-ttl", "1") for _ in range(2)]
    deadline = time.monotonic() + 15
    while sum(p.poll() is None for p in racers) != 1 or time.monotonic() < deadline - 12:
        if time.monotonic() > deadline:
            raise AssertionError("expected exactly one racer to survive")
        await asyncio.sleep(0.1)
    loser = next(p for p in racers if p.poll() is not None)
    winner = next(p for p in racers if p.poll() is None)
    assert loser.returncode == 1
    assert loser.stdout is not None
    assert "'Solo' is held by a live service" in loser.stdout.read()

    me = client()
    async with me.serve(nameservice=ns, listen=None):
        assert (await me.rpc_call("Solo", "whoami"))["pid"] == winner.pid
        # A frozen winner stops renewing: after its lease ends the name can be taken.
        os.kill(winner.pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(1.5)
            third = procs.service("worker.py", "Solo", ns, "--lease-ttl", "1")

            async def third_serves() -> bool:
                me.registry.forget("Solo")  # type: ignore[union-attr]
                try:
                    reg = await me.registry.lookup("Solo")  # type: ignore[union-attr]
                except namewire.NameNotFound:
                    return False
                return reg.addresses != ()

            await wait_until(third_serves, timeout=10)
            assert third.poll() is None
        finally:
            os.kill(winner.pid, signal.SIGCONT)


async def test_a_vanished_service_leaves_the_providers_within_its_ttl(procs: Processes) -> None:
    ns, _ = procs.nameservice()
    procs.service("worker.py", "A", ns, "--lease-ttl", "1")
    frozen = procs.service("worker.py", "B", ns, "--lease-ttl", "1")
    me = client()
    async with me.serve(nameservice=ns, listen=None):
        await wait_for_name(me, "A")
        await wait_for_name(me, "B")
        assert await me.get_remote_func_provider("plus") == ["A", "B"]
        # SIGSTOP keeps B's connections open: only the lease can tell it is gone.
        os.kill(frozen.pid, signal.SIGSTOP)
        try:
            async def b_gone() -> bool:
                return await me.get_remote_func_provider("plus") == ["A"]

            took = await wait_until(b_gone, timeout=5, interval=0.02)
            assert took < 1.0 + 0.5, f"B left the providers after {took:.2f}s (ttl 1s)"
        finally:
            os.kill(frozen.pid, signal.SIGCONT)


async def test_1000_concurrent_first_calls_share_one_lookup_and_one_connection(
    procs: Processes,
) -> None:
    ns, _ = procs.nameservice()
    procs.service("worker.py", "A", ns)

    class CountingClient(NameServiceClient):
        lookups = 0

        async def _lookup(self, name: str) -> Registration:
            CountingClient.lookups += 1
            return await super()._lookup(name)

    probe = client("probe")
    async with probe.serve(nameservice=ns, listen=None):
        await wait_for_name(probe, "A")
    me = client()
    registry = CountingClient(ns, node_name="tester")
    async with me.serve(registry=registry, listen=None):
        results = await asyncio.gather(*[me.rpc_call("A", "plus", i, 1) for i in range(1000)])
        assert results == [i + 1 for i in range(1000)]
        assert CountingClient.lookups == 1
        assert [peer for peer, _ in me.peers] == ["A"]


async def test_cancelling_a_call_cancels_the_remote_async_function(procs: Processes) -> None:
    async with cluster(procs, "A") as (me, _):
        call = asyncio.ensure_future(me.rpc_call("A", "sleep_then", 7, "never"))
        await asyncio.sleep(0.3)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call

        async def remote_saw_cancel() -> bool:
            return await me.rpc_call("A", "cancelled_calls") == [7]

        await wait_until(remote_saw_cancel, timeout=5)


async def test_rpc_call_any_rotates_and_retries_only_idempotent_functions(
    procs: Processes,
) -> None:
    async with cluster(procs, "A", "B") as (me, workers):
        a = workers["A"]
        names = [(await me.rpc_call_any("whoami"))["name"] for _ in range(4)]
        assert names == ["A", "B", "A", "B"]
        assert (await me.rpc_call_any("whoami", strategy="least_pending"))["name"] in ("A", "B")
        with pytest.raises(namewire.NoSuchFunction, match="no live service provides it"):
            await me.rpc_call_any("nobody_has_this")

        # Non-idempotent: the round-robin turn is A's; A dies mid-call -> PeerLost.
        call = asyncio.ensure_future(me.rpc_call_any("sleep_then", 30, "x"))
        await asyncio.sleep(0.3)
        os.kill(a.pid, signal.SIGKILL)
        with pytest.raises(namewire.PeerLost):
            await asyncio.wait_for(call, 5)


async def test_rpc_call_any_moves_an_idempotent_call_to_another_provider(
    procs: Processes,
) -> None:
    async with cluster(procs, "A", "B") as (me, workers):
        a = workers["A"]
        # Freeze A so the call is in flight there, then kill it: plus is idempotent, so B answers.
        os.kill(a.pid, signal.SIGSTOP)
        call = asyncio.ensure_future(me.rpc_call_any("plus", 40, 2))
        await asyncio.sleep(0.3)
        assert not call.done()
        os.kill(a.pid, signal.SIGKILL)
        assert await asyncio.wait_for(call, 5) == 42


async def test_clean_shutdown_deregisters_and_lets_calls_in_flight_finish(
    procs: Processes,
) -> None:
    async with cluster(procs, "A") as (me, workers):
        worker = workers["A"]
        call = asyncio.ensure_future(me.rpc_call("A", "sleep_then", 1.0, "finished"))
        await asyncio.sleep(0.3)
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(call, 10) == "finished"
        assert await asyncio.to_thread(worker.wait, 10) == 0
        me.registry.forget("A")  # type: ignore[union-attr]
        with pytest.raises(namewire.NameNotFound):
            await me.registry.lookup("A")  # type: ignore[union-attr]


async def test_mailbox_is_bounded_and_senders_feel_back_pressure(procs: Processes) -> None:
    ns, _ = procs.nameservice()
    receiver = client("Receiver", mailbox_size=100)
    sender = client("Sender")
    blob = "x" * 1024
    async with receiver.serve(nameservice=ns), sender.serve(nameservice=ns, listen=None):
        await wait_for_name(sender, "Receiver")
        sent = 0

        async def flood() -> None:
            nonlocal sent
            for i in range(200_000):
                await sender.send_msg("Receiver", [i, blob])
                sent += 1

        flooding = asyncio.ensure_future(flood())
        await asyncio.sleep(1.0)
        stuck_at = sent
        await asyncio.sleep(0.5)
        assert sent == stuck_at < 200_000, "the sender never had to wait"
        assert receiver._mailbox is not None and len(receiver._mailbox) < 2_000
        flooding.cancel()
        for i in range(stuck_at):
            _, (n, _) = await asyncio.wait_for(receiver.get_msg(), 5)
            assert n == i


async def test_a_node_can_message_and_call_itself_by_name(procs: Processes) -> None:
    ns, _ = procs.nameservice()
    me = client("Self", mailbox_size=2)

    @me.function
    def plus(a, b):
        return a + b

    @me.function
    async def slow(seconds):
        await asyncio.sleep(seconds)

    @me.function(name="who_called", with_caller=True)
    def who(caller):
        return caller.name

    async with me.serve(nameservice=ns):
        assert await me.rpc_call("Self", "plus", [1], [2]) == [1, 2]
        assert await me.rpc_call("Self", "who_called") == "Self"
        with pytest.raises(namewire.NoSuchFunction, match="'Self' has no function 'minus'"):
            await me.rpc_call("Self", "minus", 1, 2)
        with pytest.raises(namewire.RemoteError) as failed:
            await me.rpc_call("Self", "plus", 1, "x")
        assert failed.value.remote_type == "TypeError"
        with pytest.raises(namewire.CallTimeout):
            await me.rpc_call("Self", "slow", 5, timeout=0.1)
        with pytest.raises(namewire.EncodeError):
            await me.send_msg("Self", object())
        # The message is a copy, as a peer would get it; a full mailbox makes the sender wait.
        sent = {"n": [1]}
        await me.send_msg("Self", sent)
        await me.send_msg("Self", 2)
        third = asyncio.ensure_future(me.send_msg("Self", 3))
        await asyncio.sleep(0.1)
        assert not third.done()
        sender, first = await me.get_msg()
        assert (sender, first) == ("Self", {"n": [1]}) and first is not sent
        await asyncio.wait_for(third, 5)
        assert [(await me.get_msg())[1] for _ in range(2)] == [2, 3]
        assert me.peers == []

"""The rewritten protocol core, end to end: deadlines, liveness, message credit, frame limits.

Real name service, real sockets; nodes run in this test's loop (so what a remote function saw can be
recorded in a list) or, where a process must be frozen, in a worker subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import time
from collections.abc import AsyncIterator

import pytest

import namewire
from namewire.errors import MessageTooLarge
from namewire.node._node import serving
from namewire.transport import Session
from tests.conftest import Processes
from tests.node.test_by_name import wait_for_name, wait_until

pytestmark = pytest.mark.timeout(60)


@contextlib.asynccontextmanager
async def running(ns: str, *nodes: tuple[namewire.Node, bool]) -> AsyncIterator[None]:
    """Serve every ``(node, listens)`` against ``ns``; wait until each listening one is found."""
    async with contextlib.AsyncExitStack() as stack:
        for node, listens in nodes:
            await stack.enter_async_context(
                node.serve(nameservice=ns, listen="tcp://127.0.0.1:0" if listens else None, grace=0)
            )
        for node, _ in nodes:
            for other, listens in nodes:
                if listens and other is not node:
                    await wait_for_name(node, other.name)
        yield


def slow_node(name: str = "Slow", **options) -> tuple[namewire.Node, list[str]]:
    """A node with ``slow(seconds)``; the list records each call cancelled there."""
    node = namewire.Node(name, **options)
    cancelled: list[str] = []

    @node.function
    async def slow(seconds: float, tag: str = "") -> str:
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            cancelled.append(tag)
            raise
        return tag

    @node.function
    def plus(a: int, b: int) -> int:
        return a + b

    return node, cancelled


async def cancel_all(*tasks: asyncio.Future) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# -- 1. a short timeout filed after a long one ------------------------------------------------------


async def test_a_short_timeout_after_a_long_one_fires_on_time(procs: Processes) -> None:
    ns, _ = procs.nameservice()
    remote, _ = slow_node()
    me = namewire.Node("Caller")  # call_timeout: the default 30 s
    async with running(ns, (remote, True), (me, False)):
        assert await me.rpc_call("Slow", "plus", 1, 2) == 3  # the route is open
        long_call = asyncio.ensure_future(me.rpc_call("Slow", "slow", 60, "long"))
        tasks = [long_call]
        try:
            await asyncio.sleep(0.1)
            started = time.monotonic()
            with pytest.raises(namewire.CallTimeout) as short:
                await me.rpc_call("Slow", "slow", 60, "short", timeout=2)
            took = time.monotonic() - started
            assert 1.5 <= took <= 6, f"timeout=2 fired after {took:.2f}s"
            assert short.value.timeout == 2
            assert short.value.function == "slow"
            assert short.value.peer == "Slow"
            assert short.value.inherited is False
            assert not long_call.done()

            five = asyncio.ensure_future(me.rpc_call("Slow", "slow", 60, "five", timeout=5))
            tasks.append(five)
            await asyncio.sleep(0.05)
            started = time.monotonic()
            with pytest.raises(namewire.CallTimeout) as tiny:
                await me.rpc_call("Slow", "slow", 60, "tiny", timeout=0.3)
            took = time.monotonic() - started
            assert 0.2 <= took < 3, f"timeout=0.3 filed after a 5 s one fired after {took:.2f}s"
            assert tiny.value.timeout == 0.3
            assert not five.done()
            with pytest.raises(namewire.CallTimeout) as later:
                await asyncio.wait_for(five, 10)
            assert later.value.timeout == 5
            assert not long_call.done()
        finally:
            await cancel_all(*tasks)


# -- 2. liveness ------------------------------------------------------------------------------------


async def test_a_frozen_peer_is_lost_by_ping_and_found_again_after_it_thaws(
    procs: Processes,
) -> None:
    ns, _ = procs.nameservice()
    worker = procs.service("worker.py", "Frozen", ns)
    me = namewire.Node("Caller", ping_interval=0.5, ping_timeout=1.0)
    try:
        async with me.serve(nameservice=ns, listen=None):
            await wait_for_name(me, "Frozen")
            assert await me.rpc_call("Frozen", "plus", 1, 2) == 3
            first_route = me._routes.by_name["Frozen"]
            call = asyncio.ensure_future(me.rpc_call("Frozen", "sleep_then", 60, "x", timeout=None))
            await asyncio.sleep(0.2)
            os.kill(worker.pid, signal.SIGSTOP)
            stopped = time.monotonic()
            try:
                with pytest.raises(namewire.PeerLost) as lost:
                    await asyncio.wait_for(call, 10)
                took = time.monotonic() - stopped
                assert took < 5, f"frozen peer detected after {took:.2f}s"
                assert "ping" in lost.value.reason, lost.value.reason
                assert lost.value.peer == "Frozen"
                assert lost.value.function == "sleep_then"
            finally:
                os.kill(worker.pid, signal.SIGCONT)

            async def answers() -> bool:
                try:
                    return await me.rpc_call("Frozen", "plus", 2, 2, timeout=2) == 4
                except (namewire.PeerLost, namewire.NameNotFound, namewire.CallTimeout):
                    return False

            took = await wait_until(answers, timeout=10)
            assert took < 8
            assert me._routes.by_name["Frozen"] is not first_route  # a new connection
            assert (await me.rpc_call("Frozen", "whoami"))["pid"] == worker.pid
    finally:
        if worker.poll() is None:
            os.kill(worker.pid, signal.SIGCONT)
            os.kill(worker.pid, signal.SIGKILL)
            await asyncio.to_thread(worker.wait, 5)


# -- 3. and 4. message credit -----------------------------------------------------------------------


async def test_a_receiver_that_does_not_read_stops_messages_but_not_calls(
    procs: Processes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="namewire")
    ns, _ = procs.nameservice()
    receiver, _ = slow_node("Receiver", mailbox_size=100)
    sender = namewire.Node("Sender")
    count = 500
    async with running(ns, (receiver, True), (sender, False)):
        sent = 0

        async def send_all() -> None:
            nonlocal sent
            for i in range(count):
                await sender.send_msg("Receiver", i)
                sent += 1

        flood = asyncio.ensure_future(send_all())
        try:
            await asyncio.sleep(1.0)
            assert not flood.done(), "500 messages went into a mailbox bounded at 100"
            assert receiver._mailbox is not None
            assert len(receiver._mailbox) <= 100
            assert sent <= 101
            started = time.monotonic()
            assert await asyncio.wait_for(sender.rpc_call("Receiver", "plus", 20, 22), 5) == 42
            assert time.monotonic() - started < 5
            assert not flood.done()

            warnings = [
                r.getMessage()
                for r in caplog.records
                if r.levelno == logging.WARNING and "mailbox full" in r.getMessage()
            ]
            assert len(warnings) == 1, warnings
            assert "'Sender'" in warnings[0] and "100 messages" in warnings[0]

            received = []
            for _ in range(count):
                peer, msg = await asyncio.wait_for(receiver.get_msg(), 5)
                assert peer == "Sender"
                received.append(msg)
            assert received == list(range(count))
            await asyncio.wait_for(flood, 5)
            assert len([r for r in caplog.records if "mailbox full" in r.getMessage()]) == 1
        finally:
            await cancel_all(flood)


async def test_a_byte_bound_lets_one_big_message_in_at_a_time(procs: Processes) -> None:
    ns, _ = procs.nameservice()
    receiver = namewire.Node("Receiver", mailbox_bytes=1_000_000)
    sender = namewire.Node("Sender")
    blobs = [bytes([i]) * 2_000_000 for i in range(5)]
    async with running(ns, (receiver, True), (sender, False)):
        sent = 0

        async def send_all() -> None:
            nonlocal sent
            for blob in blobs:
                await sender.send_msg("Receiver", blob)
                sent += 1

        flood = asyncio.ensure_future(send_all())
        try:
            assert receiver._mailbox is not None
            await wait_until(_async_true(lambda: len(receiver._mailbox) == 1), timeout=5)
            await asyncio.sleep(1.0)
            assert len(receiver._mailbox) == 1
            assert not flood.done() and sent == 1  # the second waits on the sender's side
            for blob in blobs:
                peer, msg = await asyncio.wait_for(receiver.get_msg(), 5)
                assert peer == "Sender"
                assert msg == blob
                assert len(receiver._mailbox) <= 1
            await asyncio.wait_for(flood, 5)
        finally:
            await cancel_all(flood)


def _async_true(predicate):
    async def check() -> bool:
        return bool(predicate())

    return check


# -- 5. frame limits --------------------------------------------------------------------------------


async def test_oversize_call_fails_alone_and_the_connection_carries_on(procs: Processes) -> None:
    ns, _ = procs.nameservice()
    receiver, _ = slow_node("Receiver", max_frame=100_000)

    @receiver.function
    def length(blob: bytes) -> int:
        return len(blob)

    me = namewire.Node("Caller")
    async with running(ns, (receiver, True), (me, False)):
        assert await me.rpc_call("Receiver", "length", b"x" * 1000) == 1000
        route = me._routes.by_name["Receiver"]
        pending = asyncio.ensure_future(me.rpc_call("Receiver", "slow", 1.5, "survived"))
        try:
            await asyncio.sleep(0.1)
            with pytest.raises(MessageTooLarge) as too_large:
                await me.rpc_call("Receiver", "length", b"x" * 200_000)
            assert too_large.value.limit == 100_000
            assert too_large.value.size > 200_000
            assert "Receiver" in str(too_large.value) and "100000" in str(too_large.value)
            assert await me.rpc_call("Receiver", "length", b"x" * 50_000) == 50_000
            assert me._routes.by_name["Receiver"] is route, "reconnected after MessageTooLarge"
            assert not pending.done()
            assert await asyncio.wait_for(pending, 5) == "survived"
            assert [peer for peer, _ in me.peers] == ["Receiver"]
        finally:
            await cancel_all(pending)


async def test_an_oversize_result_is_a_remote_error_and_the_connection_carries_on(
    procs: Processes,
) -> None:
    ns, _ = procs.nameservice()
    remote, _ = slow_node("Big")

    @remote.function
    def blob(size: int) -> bytes:
        return b"y" * size

    me = namewire.Node("Caller", max_frame=100_000)
    async with running(ns, (remote, True), (me, False)):
        assert await me.rpc_call("Big", "blob", 10) == b"y" * 10
        route = me._routes.by_name["Big"]
        pending = asyncio.ensure_future(me.rpc_call("Big", "slow", 1.5, "survived"))
        try:
            await asyncio.sleep(0.1)
            with pytest.raises(namewire.RemoteError) as failed:
                await asyncio.wait_for(me.rpc_call("Big", "blob", 200_000), 5)
            assert failed.value.remote_type == "MessageTooLarge"
            assert "100000" in failed.value.remote_message
            assert failed.value.function == "blob" and failed.value.peer == "Big"
            assert await me.rpc_call("Big", "blob", 50_000) == b"y" * 50_000
            assert me._routes.by_name["Big"] is route
            assert await asyncio.wait_for(pending, 5) == "survived"
        finally:
            await cancel_all(pending)


# -- 6. deadlines travel ----------------------------------------------------------------------------


def chain(b_saw: list[BaseException], c_saw: list[str], requests: dict[str, int | None]):
    """Nodes A (caller), B (``f`` calls C.slow with the default timeout) and C (``slow``: 10 s)."""
    a = namewire.Node("A")
    b = namewire.Node("B")
    c = namewire.Node("C")

    @b.function
    async def f() -> str:
        now = serving.get()
        assert now is not None
        requests["B.f"] = now.request
        try:
            return await b.rpc_call("C", "slow")
        except BaseException as exc:
            b_saw.append(exc)
            raise

    @c.function
    async def slow() -> str:
        now = serving.get()
        assert now is not None
        requests["C.slow"] = now.request
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            c_saw.append("slow cancelled")
            raise
        return "slow done"

    @c.function
    def fast() -> str:
        return "fast"

    @b.function
    def ready() -> bool:
        return True

    return a, b, c


async def test_deadlines_and_request_ids_travel_down_a_chain_of_calls(procs: Processes) -> None:
    ns, _ = procs.nameservice()
    b_saw: list[BaseException] = []
    c_saw: list[str] = []
    requests: dict[str, int | None] = {}
    a, b, c = chain(b_saw, c_saw, requests)
    async with running(ns, (b, True), (c, True), (a, False)):
        await b.rpc_call("C", "fast")  # B -> C route open, so the chain does not pay the connect
        started = time.monotonic()
        with pytest.raises(namewire.CallTimeout) as timed_out:
            await a.rpc_call("B", "f", timeout=1.0)
        took = time.monotonic() - started
        assert 0.8 <= took <= 3, f"A's timeout=1.0 fired after {took:.2f}s"
        assert timed_out.value.timeout == 1.0 and timed_out.value.inherited is False
        assert timed_out.value.peer == "B" and timed_out.value.function == "f"

        await wait_until(_async_true(lambda: b_saw and c_saw), timeout=5)
        assert c_saw == ["slow cancelled"]
        assert requests["B.f"] is not None
        assert requests["C.slow"] == requests["B.f"]
        # B's own (inherited) deadline runs out before A's cancel reaches it: B sees CallTimeout.
        # (Racy before 8277a71, when the cancel could arrive first: see the next test.)
        assert isinstance(b_saw[0], namewire.CallTimeout), b_saw
        assert b_saw[0].inherited is True
        assert b_saw[0].function == "slow" and b_saw[0].peer == "C"


async def test_an_inherited_deadline_fires_in_the_callee_despite_latency(procs: Processes) -> None:
    # Found by this test, fixed in 8277a71. The callee's inherited deadline is measured from when
    # the call arrived (Session.deadline_of), so it ends one-way latency after the caller's own;
    # it used to be rounded up too, and the caller sent its cancel the moment its timeout fired.
    # The cancel reached B first, and B's nested call ended with CancelledError, never with
    # CallTimeout(inherited=True). Now budgets are rounded down and the cancel follows the
    # timeout after a grace (DEFAULT_CANCEL_GRACE). Here 50 ms of latency is simulated by blocking
    # the loop while the call to B is in flight.
    ns, _ = procs.nameservice()
    b_saw: list[BaseException] = []
    c_saw: list[str] = []
    requests: dict[str, int | None] = {}
    a, b, c = chain(b_saw, c_saw, requests)
    async with running(ns, (b, True), (c, True), (a, False)):
        await b.rpc_call("C", "fast")
        assert await a.rpc_call("B", "ready")  # routes open: the call is filed at once
        call = asyncio.ensure_future(a.rpc_call("B", "f", timeout=1.0))
        await asyncio.sleep(0)  # A has filed the call (its deadline runs from now)...
        time.sleep(0.05)  # noqa: ASYNC251 -- blocks the loop on purpose: B reads the call 50 ms late
        with pytest.raises(namewire.CallTimeout):
            await asyncio.wait_for(call, 5)
        await wait_until(_async_true(lambda: b_saw and c_saw), timeout=5)
        assert c_saw == ["slow cancelled"]
        assert isinstance(b_saw[0], namewire.CallTimeout), b_saw
        assert b_saw[0].inherited is True


async def test_a_spent_budget_fails_the_nested_call_without_sending_it(procs: Processes) -> None:
    """B.g sleeps 1.5 s, then calls C, while serving a call made with timeout=1.0.

    A's timeout cancels B.g at 1.0 s; B.g swallows that so the nested call is really made, past
    the inherited deadline: it must fail at once, and C must never be entered.
    """
    ns, _ = procs.nameservice()
    a = namewire.Node("A")
    b = namewire.Node("B")
    c = namewire.Node("C")
    b_saw: list[BaseException] = []
    c_saw: list[str] = []
    took: list[float] = []

    @b.function
    async def g() -> str:
        loop = asyncio.get_running_loop()
        end = loop.time() + 1.5
        while loop.time() < end:  # shielded from A's cancel, so the nested call is really made
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(end - loop.time())
        asked = loop.time()
        try:
            return await b.rpc_call("C", "fast")
        except BaseException as exc:
            b_saw.append(exc)
            took.append(loop.time() - asked)
            raise

    @c.function
    async def fast() -> str:
        c_saw.append("fast entered")
        return "fast"

    async with running(ns, (b, True), (c, True), (a, False)):
        await b.rpc_call("C", "fast")
        c_saw.clear()
        with pytest.raises(namewire.CallTimeout):
            await a.rpc_call("B", "g", timeout=1.0)
        await wait_until(_async_true(lambda: b_saw), timeout=5)
        assert isinstance(b_saw[0], namewire.CallTimeout), b_saw
        assert b_saw[0].inherited is True
        assert "deadline" in str(b_saw[0])
        assert took[0] < 0.5, f"the nested call failed {took[0]:.2f}s after it was made"
        await asyncio.sleep(0.3)
        assert c_saw == []


# -- 7. closed sessions are freed by reference counting ---------------------------------------------


async def restart_30_times_without_gc(procs: Processes, keep) -> tuple[int, str]:
    """Connect a node "Caller" to "Remote" 30 times (stopping and restarting "Caller" each time)
    with the cyclic GC off; return how many sessions ``keep`` selects are still alive afterwards,
    and what refers to the first of them.

    Session has __slots__ without __weakref__, so it cannot be weakly referenced: the live instances
    are counted instead (gc.get_objects lists tracked objects even while collection is disabled).
    """
    ns, _ = procs.nameservice()
    remote, _ = slow_node("Remote")
    me = namewire.Node("Caller")

    def alive() -> list[Session]:
        return [o for o in gc.get_objects() if type(o) is Session and keep(o)]

    async with remote.serve(nameservice=ns):
        gc.collect()
        gc.disable()
        try:
            for _ in range(30):
                async with me.serve(nameservice=ns, listen=None):
                    await wait_for_name(me, "Remote")
                    assert await me.rpc_call("Remote", "plus", 1, 1) == 2
                    assert len(me._routes.sessions) == 1
                await asyncio.sleep(0)

            async def all_freed() -> bool:
                return not alive()

            with contextlib.suppress(AssertionError):
                await wait_until(all_freed, timeout=3)
            left = alive()
            holders = ""
            if left:
                referrers = {type(x).__name__ for x in gc.get_referrers(left[0])}
                holders = ", ".join(sorted(referrers - {"list"}))
            count = len(left)
            del left
            return count, holders
        finally:
            gc.enable()
            gc.collect()


async def test_closed_sessions_are_freed_without_the_cyclic_gc(procs: Processes) -> None:
    # Both ends of the 30 node-to-node connections: Caller -> Remote, and Remote's accepted ones.
    count, holders = await restart_30_times_without_gc(
        procs, lambda s: {s.connection.name, s.peer_name} == {"Caller", "Remote"}
    )
    assert count == 0, (
        f"{count} sessions of the 30 connections (both ends) still alive without the cyclic GC; "
        f"one is referred to by: {holders}"
    )


async def test_a_stopped_nodes_name_service_session_is_freed_without_the_cyclic_gc(
    procs: Processes,
) -> None:
    # Found by this test, fixed in 84627ce: NameServiceClient kept `_session` after close(), and
    # the Session's handler is the client, so each stopped node left a cycle behind.
    count, holders = await restart_30_times_without_gc(
        procs, lambda s: s.connection.name == "Caller" and s.peer_name == "namewire.nameservice"
    )
    assert count == 0, (
        f"{count} name service sessions of 30 stopped nodes still alive without the cyclic GC; "
        f"one is referred to by: {holders}"
    )


# -- 8. JSON ------------------------------------------------------------------------------------------


async def test_a_json_caller_calls_and_messages_a_msgpack_node(procs: Processes) -> None:
    ns, _ = procs.nameservice()
    remote, _ = slow_node("Packed")
    got: list[tuple[str, object]] = []

    @remote.function(with_caller=True)
    async def reply_to(caller: namewire.Caller, msg: object) -> None:
        await remote.send_msg(caller.name, {"back": msg})

    me = namewire.Node("Jason", codec="json")
    async with running(ns, (remote, True), (me, False)):
        assert await me.rpc_call("Packed", "plus", 40, 2) == 42
        assert await me.rpc_call("Packed", "plus", [1], ["a"]) == [1, "a"]
        await me.send_msg("Packed", {"text": "hi", "n": [1, 2.5, None, True]})
        peer, msg = await asyncio.wait_for(remote.get_msg(), 5)
        got.append((peer, msg))
        assert got == [("Jason", {"text": "hi", "n": [1, 2.5, None, True]})]
        await me.rpc_call("Packed", "reply_to", "ok")
        assert await asyncio.wait_for(me.get_msg(), 5) == ("Packed", {"back": "ok"})
        assert me._routes.by_name["Packed"].connection.codec == "json"
        with pytest.raises(namewire.CallTimeout):
            await me.rpc_call("Packed", "slow", 5, timeout=0.3)


# -- 9. cancel --------------------------------------------------------------------------------------


async def test_cancelling_a_pending_call_cancels_the_remote_function(procs: Processes) -> None:
    ns, _ = procs.nameservice()
    remote, cancelled = slow_node()
    me = namewire.Node("Caller")
    async with running(ns, (remote, True), (me, False)):
        call = asyncio.ensure_future(me.rpc_call("Slow", "slow", 30, "cancel me"))
        await asyncio.sleep(0.3)
        assert not call.done()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await wait_until(_async_true(lambda: cancelled == ["cancel me"]), timeout=5)
        assert remote._routes.running_calls() == []
        assert await me.rpc_call("Slow", "slow", 0, "after") == "after"

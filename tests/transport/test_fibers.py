"""What a `listen` handler may rely on, on both stream-socket implementations.

With the C reactor a handler runs as its connection's "fiber": while it waits in ``recv()`` on its
own socket, an arriving packet resumes it straight from the reactor, outside its task's own steps.
None of that may show: the handler is an ordinary coroutine of an ordinary task (current task,
contextvars, timeouts, cancellation, other awaits), exactly as with the pure-asyncio sockets.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import socket
import struct
import time
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from namewire.transport import StreamSocket, connect, listen
from namewire.wire import encode_frame

from .conftest import echo, raw_connect, raw_recv_exactly

# Every wait in these tests is bounded by this (the suite's own timeout is 60 s).
WAIT = 5.0


async def stream(url: str, **options: Any) -> StreamSocket:
    sock = await connect(url, **options)
    assert isinstance(sock, StreamSocket)
    return sock


async def eventually(
    predicate: Callable[[], bool], what: str, timeout: float = WAIT, state: object = None
) -> None:
    """Wait until ``predicate()`` holds; fail naming ``what`` (and ``state``) after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}" + ("" if state is None else f": {state}"))
        await asyncio.sleep(0.002)


async def roundtrip(sock: StreamSocket, packet: bytes) -> bytes | None:
    await sock.send(packet)
    async with asyncio.timeout(WAIT):
        return await sock.recv()


def other_tasks() -> set[asyncio.Task[Any]]:
    current = asyncio.current_task()
    return {task for task in asyncio.all_tasks() if task is not current and not task.done()}


# --- 1. the current task -----------------------------------------------------------------------


async def test_current_task_is_the_handler_task_before_and_after_recv(stream_url: str) -> None:
    seen: list[tuple[str, asyncio.Task[Any] | None]] = []
    finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def handler(sock: StreamSocket) -> None:
        seen.append(("start", asyncio.current_task()))
        while (packet := await sock.recv()) is not None:
            seen.append(("after recv", asyncio.current_task()))
            if packet == b"yield":
                await asyncio.sleep(0)
                seen.append(("after sleep(0)", asyncio.current_task()))
            await sock.send(packet)
        seen.append(("after end of stream", asyncio.current_task()))
        finished.set_result(None)

    async with await listen(stream_url, handler) as listener:
        sock = await stream(listener.address)
        try:
            for packet in (b"one", b"yield", b"two", b"three"):
                assert await roundtrip(sock, packet) == packet
        finally:
            await sock.close()
        await asyncio.wait_for(finished, WAIT)

    assert [where for where, _ in seen] == [
        "start",
        "after recv",
        "after recv",
        "after sleep(0)",
        "after recv",
        "after recv",
        "after end of stream",
    ]
    first = seen[0][1]
    assert isinstance(first, asyncio.Task)
    assert first is not asyncio.current_task()
    for where, task in seen:
        assert task is first, f"current_task() {where} is {task!r}, not the handler's task"
    # The reactor left nothing entered behind: a plain callback runs outside any task, and this
    # test's own task is still the current one here.
    outside: asyncio.Future[asyncio.Task[Any] | None] = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(lambda: outside.set_result(asyncio.current_task()))
    assert await outside is None


# --- 2. contextvars ----------------------------------------------------------------------------

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


async def test_context_variables_survive_recv_and_stay_in_the_handler(stream_url: str) -> None:
    """Each handler keeps its own context across its awaits, whether the value was set before a
    recv() or in the step a packet resumed; nothing leaks to other connections or the client."""
    seen: dict[str, list[str]] = {}

    async def handler(sock: StreamSocket) -> None:
        name = await sock.recv()
        assert name is not None
        key = name.decode()
        mine = seen.setdefault(key, [])
        request_id.set(key)
        while (packet := await sock.recv()) is not None:
            mine.append(request_id.get())
            if packet.startswith(b"set "):
                request_id.set(packet[4:].decode())
            elif packet == b"yield":
                await asyncio.sleep(0)
                mine.append(request_id.get())
            await sock.send(request_id.get().encode())

    request_id.set("client")
    async with await listen(stream_url, handler) as listener:
        a = await stream(listener.address)
        b = await stream(listener.address)
        try:
            await a.send(b"a")
            await b.send(b"b")
            # Interleaved, so the two fibers are resumed one after the other by the same reactor.
            assert await roundtrip(a, b"x") == b"a"
            assert await roundtrip(b, b"x") == b"b"
            assert await roundtrip(a, b"set a2") == b"a2"  # set in a step a packet resumed...
            assert await roundtrip(b, b"yield") == b"b"
            assert await roundtrip(a, b"x") == b"a2"  # ...still set after the next recv()
            assert await roundtrip(a, b"yield") == b"a2"  # ...and in steps the task runs
            assert await roundtrip(b, b"set b2") == b"b2"
            assert await roundtrip(b, b"yield") == b"b2"
            assert await roundtrip(a, b"x") == b"a2"
            assert request_id.get() == "client"
        finally:
            await a.close()
            await b.close()
    assert seen == {
        "a": ["a", "a", "a2", "a2", "a2", "a2"],
        "b": ["b", "b", "b", "b", "b2", "b2"],
    }
    assert request_id.get() == "client"
    fresh: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(lambda: fresh.set_result(request_id.get()))
    assert await fresh == "client"


# --- 3. asyncio.timeout around recv() ----------------------------------------------------------


async def test_timeout_in_recv_raises_timeout_error_and_the_handler_keeps_serving(
    stream_url: str,
) -> None:
    events: list[str] = []

    async def handler(sock: StreamSocket) -> None:
        task = asyncio.current_task()
        assert task is not None
        first = await sock.recv()  # resumed by the packet (the reactor, natively)
        assert first == b"hello"
        # A timeout that passes without firing leaves nothing behind...
        async with asyncio.timeout(0.05):
            assert await sock.recv() == b"quick"
        await asyncio.sleep(0.1)
        events.append(f"cancelling={task.cancelling()}")
        # ...and one that fires on an idle recv() is a TimeoutError, uncancelled.
        try:
            async with asyncio.timeout(0.2):
                await sock.recv()
            events.append("no timeout")
        except TimeoutError:
            events.append("timeout")
        events.append(f"cancelling={task.cancelling()}")
        await sock.send(b"timed out")
        await echo(sock)
        events.append("end")

    async with await listen(stream_url, handler) as listener:
        sock = await stream(listener.address)
        try:
            await sock.send(b"hello")
            await sock.send(b"quick")
            started = time.monotonic()
            async with asyncio.timeout(WAIT):
                assert await sock.recv() == b"timed out"
            assert time.monotonic() - started >= 0.25
            for packet in (b"still", b"serving"):
                assert await roundtrip(sock, packet) == packet
        finally:
            await sock.close()
        await eventually(lambda: "end" in events, "the handler to end")
    assert events == ["cancelling=0", "timeout", "cancelling=0", "end"]


@pytest.mark.parametrize("send", ["now", "in a callback"])
async def test_timeout_expiring_as_a_packet_arrives_leaves_no_stray_cancellation(
    stream_url: str, send: str
) -> None:
    """The deadline passes in the same loop turn as a packet arrives. Either outcome is fine for
    that recv() (the packet or TimeoutError, the packet then coming next), but the packet must not
    be lost and the spent cancellation must not hit the handler later, outside the timeout.

    The frame is readable at once on loopback. Sent now, the reactor sees it in the next turn,
    after the expired timeout's callback has cancelled the task (the asyncio loop runs I/O callbacks
    after those already scheduled); sent by a callback scheduled just before the timeout's, it is
    readable before uvloop polls for I/O in the turn that runs both."""
    waiting: list[asyncio.Timeout] = []  # the handler's timeout while it waits in recv()
    events: list[object] = []

    async def handler(sock: StreamSocket) -> None:
        try:
            while True:
                try:
                    async with asyncio.timeout(None) as deadline:
                        waiting.append(deadline)
                        try:
                            packet = await sock.recv()
                        finally:
                            waiting.clear()
                except TimeoutError:
                    events.append("timeout")
                    continue
                if packet is None:
                    events.append("end")
                    return
                events.append(packet)
                await sock.send(packet)
        except asyncio.CancelledError:
            events.append("cancelled")
            raise

    loop = asyncio.get_running_loop()
    async with await listen(stream_url, handler) as listener:
        raw = await raw_connect(listener.address)
        try:
            for i in range(5):
                await eventually(
                    lambda: bool(waiting) or "cancelled" in events,
                    "the handler to wait in recv()",
                    state=events,
                )
                assert "cancelled" not in events, f"stray CancelledError in the handler: {events}"
                await asyncio.sleep(0.01)
                assert waiting, events
                packet = b"packet %d" % i
                if send == "now":
                    raw.send(encode_frame(packet))
                else:
                    loop.call_soon(raw.send, encode_frame(packet))
                waiting[0].reschedule(loop.time())
                echoed = await asyncio.wait_for(
                    raw_recv_exactly(raw, len(encode_frame(packet))), WAIT
                )
                assert echoed == encode_frame(packet), events
        finally:
            raw.close()
        await eventually(lambda: events[-1:] in (["end"], ["cancelled"]), "the handler to end")
    assert "cancelled" not in events, events
    assert [event for event in events if event != "timeout"] == [
        b"packet %d" % i for i in range(5)
    ] + ["end"]


# --- 4. other awaits between packets -----------------------------------------------------------


@pytest.mark.parametrize("pipelined", [False, True], ids=["ping-pong", "pipelined"])
async def test_other_awaits_between_packets_lose_nothing(stream_url: str, pipelined: bool) -> None:
    """Between packets the handler awaits sleep(0), a sleep, an Event another task sets, a recv()
    on a second server-side connection, and a round trip on a client socket of its own."""
    side_sock: asyncio.Future[StreamSocket] = asyncio.get_running_loop().create_future()

    async def set_soon(event: asyncio.Event) -> None:  # another task sets the handler's event
        await asyncio.sleep(0.002)
        event.set()

    side_done = asyncio.Event()
    got: list[bytes] = []
    side_got: list[bytes | None] = []
    count = 40

    async def handler(sock: StreamSocket) -> None:
        role = await sock.recv()
        if role == b"side":
            side_sock.set_result(sock)  # read by the main connection's handler from now on
            await side_done.wait()
            return
        assert role == b"main"
        side = await side_sock
        helper = await stream(helper_listener.address)
        try:
            n = 0
            while (packet := await sock.recv()) is not None:
                got.append(packet)
                kind = n % 5
                n += 1
                if kind == 0:
                    await asyncio.sleep(0)
                elif kind == 1:
                    await asyncio.sleep(0.005)
                elif kind == 2:
                    event = asyncio.Event()

                    setter_task = asyncio.create_task(set_soon(event))
                    await event.wait()
                    await setter_task
                elif kind == 3:
                    side_got.append(await side.recv())
                else:
                    await helper.send(packet)
                    assert await helper.recv() == packet
                await sock.send(packet)
        finally:
            side_done.set()
            await helper.close()

    helper_listener = await listen("tcp://127.0.0.1:0", echo)
    try:
        async with await listen(stream_url, handler) as listener:
            side = await stream(listener.address)
            main = await stream(listener.address)
            try:
                await side.send(b"side")
                await asyncio.wait_for(side_sock, WAIT)
                await main.send(b"main")
                for i in range(count // 5):
                    await side.send(b"side %d" % i)
                packets = [b"packet %d" % i for i in range(count)]
                if pipelined:
                    for packet in packets:
                        await main.send(packet)
                    for packet in packets:
                        async with asyncio.timeout(WAIT):
                            assert await main.recv() == packet
                else:
                    for packet in packets:
                        assert await roundtrip(main, packet) == packet
            finally:
                await main.close()
                await side.close()
            await asyncio.wait_for(side_done.wait(), WAIT)
    finally:
        await helper_listener.close()
    assert got == packets
    assert side_got == [b"side %d" % i for i in range(count // 5)]


async def test_recv_through_helper_coroutines_and_async_generators(stream_url: str) -> None:
    """recv() awaited a few calls down (an async generator, a helper coroutine) still works."""
    got: list[bytes] = []

    async def packets(sock: StreamSocket) -> AsyncIterator[bytes]:
        while (packet := await sock.recv()) is not None:
            yield packet

    async def next_two(sock: StreamSocket) -> tuple[bytes | None, bytes | None]:
        return await sock.recv(), await sock.recv()

    async def handler(sock: StreamSocket) -> None:
        async for packet in packets(sock):
            got.append(packet)
            if packet == b"pair":
                first, second = await next_two(sock)
                assert first is not None and second is not None
                got.extend((first, second))
                packet = first + second
            await sock.send(packet)

    async with await listen(stream_url, handler) as listener:
        sock = await stream(listener.address)
        try:
            assert await roundtrip(sock, b"a") == b"a"
            await sock.send(b"pair")
            await asyncio.sleep(0.01)
            await sock.send(b"b")
            await asyncio.sleep(0.01)
            await sock.send(b"c")
            async with asyncio.timeout(WAIT):
                assert await sock.recv() == b"bc"
            assert await roundtrip(sock, b"d") == b"d"
        finally:
            await sock.close()
    assert got == [b"a", b"pair", b"b", b"c", b"d"]


# --- 5. Listener.close() -----------------------------------------------------------------------


async def test_listener_close_cancels_handlers_wherever_they_wait(stream_url: str) -> None:
    """Handlers waiting in recv() and in other awaits all get CancelledError, may still send a
    last packet, and close() returns promptly with no task left behind."""
    ready: list[int] = []
    outcomes: dict[int, list[str]] = {}
    tasks: list[asyncio.Task[Any]] = []
    count = 6

    async def handler(sock: StreamSocket) -> None:
        hello = await sock.recv()
        assert hello is not None
        n = int(hello)
        task = asyncio.current_task()
        assert task is not None
        tasks.append(task)
        outcome = outcomes.setdefault(n, [])
        try:
            ready.append(n)
            if n % 3 == 0:
                await sock.recv()
            elif n % 3 == 1:
                await asyncio.sleep(60)
            else:
                await asyncio.Event().wait()
            outcome.append("woke")
        except asyncio.CancelledError:
            outcome.append("cancelled")
            await sock.send(b"bye %d" % n)
            raise
        finally:
            outcome.append("finally")

    listener = await listen(stream_url, handler)
    socks = [await stream(listener.address) for _ in range(count)]
    try:
        for n, sock in enumerate(socks):
            await sock.send(b"%d" % n)
        await eventually(lambda: len(ready) == count, "every handler to wait")
        await asyncio.sleep(0.02)  # let each reach its await
        started = time.monotonic()
        async with asyncio.timeout(WAIT):
            await listener.close()
        assert time.monotonic() - started < 2.0
        assert outcomes == {n: ["cancelled", "finally"] for n in range(count)}
        assert all(task.done() for task in tasks)
        assert listener.connections == 0
        assert not other_tasks()
        for n, sock in enumerate(socks):
            async with asyncio.timeout(WAIT):
                assert await sock.recv() == b"bye %d" % n
                assert await sock.recv() is None
    finally:
        for sock in socks:
            await sock.close()
        await listener.close()


# --- 6. a failing handler ----------------------------------------------------------------------


@pytest.mark.parametrize("where", ["after recv", "after sleep"])
async def test_handler_exception_is_logged_and_ends_only_its_connection(
    stream_url: str, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    caplog.set_level(logging.ERROR, logger="namewire.transport")

    async def handler(sock: StreamSocket) -> None:
        seen = 0
        while (packet := await sock.recv()) is not None:
            seen += 1
            if packet == b"boom":
                if where == "after sleep":
                    await asyncio.sleep(0.001)
                raise ValueError(f"boom after {seen} packets")
            await sock.send(packet)

    async with await listen(stream_url, handler) as listener:
        victim = await stream(listener.address)
        bystander = await stream(listener.address)
        try:
            for i in range(3):
                assert await roundtrip(victim, b"%d" % i) == b"%d" % i
                assert await roundtrip(bystander, b"%d" % i) == b"%d" % i
            assert await roundtrip(victim, b"boom") is None
            await eventually(lambda: listener.connections == 1, "the failed handler to end")
            for i in range(3):
                assert await roundtrip(bystander, b"after %d" % i) == b"after %d" % i
        finally:
            await victim.close()
            await bystander.close()
    failures = [
        record
        for record in caplog.records
        if record.name == "namewire.transport" and record.levelno == logging.ERROR
    ]
    assert len(failures) == 1, [record.getMessage() for record in failures]
    record = failures[0]
    assert record.getMessage().startswith("handler for connection ")
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ValueError)
    assert str(record.exc_info[1]) == "boom after 4 packets"


# --- 7. the peer closes --------------------------------------------------------------------------


async def test_peer_close_ends_recv_with_none_and_the_handler_returns(stream_url: str) -> None:
    events: list[bytes | None | str] = []

    async def handler(sock: StreamSocket) -> None:
        while True:
            packet = await sock.recv()
            events.append(packet)
            if packet is None:
                break
        events.append(await sock.recv())  # stays at end of stream
        events.append("returned")

    async with await listen(stream_url, handler) as listener:
        sock = await stream(listener.address)
        for packet in (b"a", b"b", b"c"):
            await sock.send(packet)
        await sock.close()
        await eventually(lambda: events[-1:] == ["returned"], "the handler to return")
        await eventually(lambda: listener.connections == 0, "the connection to end")
    assert events == [b"a", b"b", b"c", None, None, "returned"]


async def test_handler_answers_a_half_closed_peer(stream_url: str) -> None:
    events: list[bytes | None] = []

    async def handler(sock: StreamSocket) -> None:
        while (packet := await sock.recv()) is not None:
            events.append(packet)
            await sock.send(packet)
        events.append(None)
        await sock.send(b"bye after %d" % (len(events) - 1))

    async with await listen(stream_url, handler) as listener:
        raw = await raw_connect(listener.address)
        loop = asyncio.get_running_loop()
        try:
            await loop.sock_sendall(raw, encode_frame(b"one") + encode_frame(b"two"))
            raw.shutdown(socket.SHUT_WR)
            expected = encode_frame(b"one") + encode_frame(b"two") + encode_frame(b"bye after 2")
            assert await asyncio.wait_for(raw_recv_exactly(raw, len(expected)), WAIT) == expected
            assert await asyncio.wait_for(loop.sock_recv(raw, 100), WAIT) == b""
        finally:
            raw.close()
    assert events == [b"one", b"two", None]


# --- 8. closing a handler's socket from elsewhere -------------------------------------------


@pytest.mark.parametrize("closer", ["other task", "other handler"])
@pytest.mark.parametrize("method", ["close", "abort"])
async def test_closing_a_socket_under_a_waiting_handler_ends_its_recv(
    stream_url: str, closer: str, method: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="namewire.transport")
    victims: asyncio.Queue[StreamSocket] = asyncio.Queue()
    events: list[object] = []

    async def shut(sock: StreamSocket) -> None:
        if method == "close":
            await sock.close()
        else:
            sock.abort()

    async def handler(sock: StreamSocket) -> None:
        role = await sock.recv()
        if role == b"victim":
            victims.put_nowait(sock)
            try:
                events.append(await sock.recv())
            except BaseException as exc:
                events.append(exc)
                raise
            events.append("returned")
            return
        # The killer: closes the victim's socket in a step a packet resumed.
        victim = await victims.get()
        while (packet := await sock.recv()) is not None:
            if packet == b"kill":
                await shut(victim)
            await sock.send(packet)

    async with await listen(stream_url, handler) as listener:
        victim_client = await stream(listener.address)
        killer = await stream(listener.address)
        try:
            await victim_client.send(b"victim")
            if closer == "other task":
                victim = await asyncio.wait_for(victims.get(), WAIT)
                await asyncio.sleep(0.01)  # the victim's handler waits in recv()
                await shut(victim)
                await killer.send(b"killer")
                victims.put_nowait(victim)
            else:
                await eventually(lambda: victims.qsize() == 1, "the victim's handler")
                await killer.send(b"killer")
                await asyncio.sleep(0.01)
                assert await roundtrip(killer, b"kill") == b"kill"
            await eventually(
                lambda: len(events) >= 2 or any(isinstance(e, BaseException) for e in events),
                "the victim's handler to end",
            )
            assert events == [None, "returned"]
            async with asyncio.timeout(WAIT):
                assert await victim_client.recv() is None
            assert await roundtrip(killer, b"alive") == b"alive"
        finally:
            await victim_client.close()
            await killer.close()
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


# --- 9. framing under the fiber ------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [0, 7], ids=["one-write", "7-byte-writes"])
async def test_a_thousand_frames_in_one_write_reach_the_handler_in_order(
    stream_url: str, chunk: int
) -> None:
    got: list[bytes] = []

    async def handler(sock: StreamSocket) -> None:
        while (packet := await sock.recv()) is not None:
            got.append(packet)
            if len(got) % 100 == 0:
                await asyncio.sleep(0)  # now and then through the task, with frames queued
            await sock.send(b"%d:" % len(got) + packet)

    frames = [b"%d" % i for i in range(1000)]
    data = b"".join(encode_frame(frame) for frame in frames)
    expected = b"".join(encode_frame(b"%d:%d" % (i + 1, i)) for i in range(1000))
    loop = asyncio.get_running_loop()
    async with await listen(stream_url, handler) as listener:
        raw = await raw_connect(listener.address)
        try:
            if chunk:
                for start in range(0, len(data), chunk):
                    await loop.sock_sendall(raw, data[start : start + chunk])
            else:
                await loop.sock_sendall(raw, data)
            assert await asyncio.wait_for(raw_recv_exactly(raw, len(expected)), WAIT) == expected
        finally:
            raw.close()
    assert got == frames


async def test_a_frame_written_byte_by_byte_reaches_the_handler_whole(stream_url: str) -> None:
    got: list[bytes] = []

    async def handler(sock: StreamSocket) -> None:
        while (packet := await sock.recv()) is not None:
            got.append(packet)
            await sock.send(b"got %d bytes" % len(packet))

    body = bytes(range(256)) * 2 + b"end"
    frame = encode_frame(body) + encode_frame(b"x")
    loop = asyncio.get_running_loop()
    async with await listen(stream_url, handler) as listener:
        raw = await raw_connect(listener.address)
        try:
            for i in range(len(frame)):
                await loop.sock_sendall(raw, frame[i : i + 1])
                if i < 8 or i % 64 == 0 or i > len(frame) - 8:
                    await asyncio.sleep(0.002)  # the server reads these bytes one by one
            expected = encode_frame(b"got %d bytes" % len(body)) + encode_frame(b"got 1 bytes")
            assert await asyncio.wait_for(raw_recv_exactly(raw, len(expected)), WAIT) == expected
        finally:
            raw.close()
    assert got == [body, b"x"]
    assert struct.unpack(">I", frame[:4])[0] == len(body)


# --- 10. nothing outlives its connection ------------------------------------------------------


async def test_closed_connections_leave_no_native_socket_alive(
    stream_url: str, sockets_impl: str
) -> None:
    if sockets_impl != "native":
        pytest.skip("tracks NativeStreamSocket objects")
    from namewire.transport._native_stream import NativeStreamSocket

    server_refs: list[weakref.ref[Any]] = []
    client_refs: list[weakref.ref[Any]] = []

    async def handler(sock: StreamSocket) -> None:
        assert isinstance(sock, NativeStreamSocket)
        server_refs.append(weakref.ref(sock))
        packet = await sock.recv()
        if packet is None:
            return
        await sock.send(packet)
        if packet == b"return":  # the handler ends the connection
            return
        if packet == b"close":  # the handler closes its socket itself, then reads the end
            await sock.close()
            assert await sock.recv() is None
            return
        if packet == b"sleep":  # waits through its task, then echoes until the client closes
            await asyncio.sleep(0.001)
        await echo(sock)

    async def one(i: int) -> None:
        sock = await stream(listener.address)
        assert isinstance(sock, NativeStreamSocket)
        client_refs.append(weakref.ref(sock))
        word = (b"return", b"close", b"sleep", b"echo")[i % 4]
        assert await roundtrip(sock, word) == word
        if word in (b"return", b"close"):
            async with asyncio.timeout(WAIT):
                assert await sock.recv() is None
        await sock.close()

    async with await listen(stream_url, handler) as listener:
        for batch in range(10):
            await asyncio.gather(*(one(batch * 20 + i) for i in range(20)))
        await eventually(lambda: listener.connections == 0, "every handler to end")
        # Some left waiting in recv() when the listener closes.
        parked = [await stream(listener.address) for _ in range(10)]
        for sock in parked:
            client_refs.append(weakref.ref(sock))
            await sock.send(b"echo")
        await eventually(lambda: len(server_refs) == 210, "the parked handlers")
    for sock in parked:
        await sock.close()
    del sock, parked
    await asyncio.sleep(0.01)
    gc.collect()
    assert len(server_refs) == 210 and len(client_refs) == 210
    alive_server = [ref() for ref in server_refs if ref() is not None]
    alive_client = [ref() for ref in client_refs if ref() is not None]
    assert not alive_server, f"{len(alive_server)} server sockets alive: {alive_server[:3]}"
    assert not alive_client, f"{len(alive_client)} client sockets alive: {alive_client[:3]}"

"""Defects found in the C reactor's sockets, each held to the pure-asyncio socket's behaviour."""

from __future__ import annotations

import asyncio
import gc
import socket
import sys
import warnings
import weakref
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from namewire.errors import TransportError
from namewire.transport import StreamSocket, _native_stream, connect, listen

from .conftest import echo

WAIT = 5.0


def silent_server() -> tuple[socket.socket, str]:
    """A listening socket whose accepted connections are never read: the client's sends pile up."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    host, port = server.getsockname()
    return server, f"tcp://{host}:{port}"


async def blocked_sender(url: str) -> tuple[StreamSocket, asyncio.Task[None]]:
    sock = await connect(url)
    assert isinstance(sock, StreamSocket)
    chunk = bytes(64 * 1024)

    async def flood() -> None:
        while True:
            await sock.send(chunk)

    task = asyncio.create_task(flood())
    for _ in range(100):  # until the kernel buffers are full and send() waits for drain
        await asyncio.sleep(0.02)
        if task.done():
            break
    assert not task.done(), task
    return sock, task


# --- 1: a send() waiting for drain is woken by abort() or an expired linger ---------------------


async def test_abort_wakes_a_send_waiting_for_drain() -> None:
    server, url = silent_server()
    try:
        sock, task = await blocked_sender(url)
        sock.abort()
        with pytest.raises(TransportError) as caught:
            await asyncio.wait_for(task, WAIT)
        assert type(caught.value) is TransportError
        assert str(caught.value) == f"socket to {sock.peer_address} is closed"
    finally:
        server.close()


async def test_expired_linger_wakes_a_send_waiting_for_drain() -> None:
    server, url = silent_server()
    try:
        sock, task = await blocked_sender(url)
        await asyncio.wait_for(sock.close(linger=0.2), WAIT)
        with pytest.raises(TransportError) as caught:
            await asyncio.wait_for(task, WAIT)
        assert type(caught.value) is TransportError
        assert str(caught.value) == f"socket to {sock.peer_address} is closed"
    finally:
        server.close()


# --- 2: a NativeStreamSocket whose constructor fails leaves nothing behind -------------------------


def native_only(sockets_impl: str) -> None:
    if sockets_impl != "native":
        pytest.skip("C reactor only")


def epoll_fds(reactor: Any) -> set[int]:
    """The fds in the reactor's epoll set, from /proc (Linux)."""
    text = Path(f"/proc/self/fdinfo/{reactor.fileno()}").read_text()
    return {int(line.split()[1]) for line in text.splitlines() if line.startswith("tfd:")}


def live_native_sockets() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, _native_stream.NativeStreamSocket))


async def test_failed_constructor_leaves_nothing_registered(sockets_impl: str) -> None:
    native_only(sockets_impl)
    loop = asyncio.get_running_loop()
    async with await listen("tcp://127.0.0.1:0", echo) as listener:
        keeper = await connect(listener.address)  # keeps the loop's reactor alive
        reactor = _native_stream._reactor_of(loop)
        conns, before = reactor.conns, live_native_sockets()
        # Not connected, as when the peer left before it was served: getpeername() fails.
        lonely = socket.socket()
        lonely.setblocking(False)
        with pytest.raises(OSError):
            _native_stream.NativeStreamSocket(lonely, max_frame=1024, queue_limit=1024)
        assert reactor.conns == conns
        assert lonely.fileno() not in epoll_fds(reactor)
        assert live_native_sockets() == before
        # Bad arguments, on a connected socket.
        peer = socket.create_connection(("127.0.0.1", int(listener.address.rsplit(":", 1)[1])))
        peer.setblocking(False)
        for bad in ({"max_frame": 0, "queue_limit": 1}, {"max_frame": 1, "queue_limit": 0}):
            with pytest.raises(ValueError):
                _native_stream.NativeStreamSocket(peer, **bad)
        assert reactor.conns == conns
        assert peer.fileno() not in epoll_fds(reactor)
        assert live_native_sockets() == before
        lonely.close()
        peer.close()
        await keeper.close()


async def test_failed_constructor_does_not_leave_a_reactor_behind(sockets_impl: str) -> None:
    native_only(sockets_impl)
    loop = asyncio.get_running_loop()
    assert loop not in _native_stream._reactors
    lonely = socket.socket()
    lonely.setblocking(False)
    with pytest.raises(OSError):
        _native_stream.NativeStreamSocket(lonely, max_frame=1024, queue_limit=1024)
    lonely.close()
    assert loop not in _native_stream._reactors


# --- 6: listen() and connect() check max_frame and queue_limit up front ---------------------------


@pytest.mark.parametrize(
    ("option", "value", "text"),
    [
        ("max_frame", 0, "max_frame must be in 1..4294967295, not 0"),
        ("max_frame", 2**32, "max_frame must be in 1..4294967295, not 4294967296"),
        ("queue_limit", 0, f"queue_limit must be in 1..{sys.maxsize}, not 0"),
        ("queue_limit", -5, f"queue_limit must be in 1..{sys.maxsize}, not -5"),
    ],
)
async def test_listen_and_connect_check_their_limits(
    stream_url: str, option: str, value: int, text: str
) -> None:
    with pytest.raises(ValueError) as caught:
        await listen(stream_url, echo, **{option: value})
    assert str(caught.value) == text
    # Checked before connecting: nobody listens there, yet the error is about the argument.
    server, url = silent_server()
    server.close()
    with pytest.raises(ValueError) as caught:
        await connect(url, **{option: value})
    assert str(caught.value) == text


async def test_listener_with_valid_limits_still_serves(stream_url: str) -> None:
    async with await listen(stream_url, echo, max_frame=1, queue_limit=1) as listener:
        sock = await connect(listener.address, max_frame=1, queue_limit=1)
        assert isinstance(sock, StreamSocket)
        await sock.send(b"x")
        assert await asyncio.wait_for(sock.recv(), WAIT) == b"x"
        await sock.close()


# --- 3: whatever send() and recv() return is accepted wherever a coroutine is --------------------


async def test_send_and_recv_are_coroutines(echo_listener: Any) -> None:
    sock = await connect(echo_listener.address)
    assert isinstance(sock, StreamSocket)
    try:
        sending = sock.send(b"probe")
        receiving = sock.recv()
        for awaitable in (sending, receiving):
            assert asyncio.iscoroutine(awaitable), type(awaitable)
            assert isinstance(awaitable, Coroutine)
        await sending
        assert await asyncio.wait_for(receiving, WAIT) == b"probe"
        await asyncio.create_task(sock.send(b"one"))
        await asyncio.ensure_future(sock.send(b"two"))
        await asyncio.gather(sock.send(b"three"), sock.send(b"four"))
        assert await asyncio.wait_for(asyncio.create_task(sock.recv()), WAIT) == b"one"
        assert await asyncio.wait_for(asyncio.ensure_future(sock.recv()), WAIT) == b"two"
        got = await asyncio.wait_for(asyncio.gather(sock.recv()), WAIT)
        assert got == [b"three"]
        assert await asyncio.wait_for(sock.recv(), WAIT) == b"four"
    finally:
        await sock.close()


async def test_a_recv_task_can_be_cancelled_and_loses_nothing(echo_listener: Any) -> None:
    sock = await connect(echo_listener.address)
    assert isinstance(sock, StreamSocket)
    try:
        task = asyncio.create_task(sock.recv())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await sock.send(b"after")
        assert await asyncio.wait_for(asyncio.create_task(sock.recv()), WAIT) == b"after"
    finally:
        await sock.close()


async def test_throw_into_send_and_recv_raises_what_was_thrown(echo_listener: Any) -> None:
    sock = await connect(echo_listener.address)
    assert isinstance(sock, StreamSocket)
    try:
        for make in (lambda: sock.send(b"x"), sock.recv):
            awaitable = make()
            with pytest.raises(KeyError, match="thrown"):
                awaitable.throw(KeyError("thrown"))
            assert awaitable.close() is None
    finally:
        sock.abort()


async def test_send_awaitable_driven_by_hand_finishes_with_none(echo_listener: Any) -> None:
    sock = await connect(echo_listener.address)
    assert isinstance(sock, StreamSocket)
    try:
        with pytest.raises(StopIteration) as caught:
            sock.send(b"by hand").send(None)
        assert caught.value.value is None
        assert await asyncio.wait_for(sock.recv(), WAIT) == b"by hand"
    finally:
        await sock.close()


# --- 5: a closed loop that ran native connections is garbage, even with a socket left open -------


async def _serve_once(leave_open: bool) -> None:
    async with await listen("tcp://127.0.0.1:0", echo) as listener:
        sock = await connect(listener.address)
        assert isinstance(sock, StreamSocket)
        await sock.send(b"x")
        assert await asyncio.wait_for(sock.recv(), WAIT) == b"x"
        if not leave_open:
            await sock.close()


@pytest.mark.parametrize("leave_open", [False, True], ids=["closed", "left-open"])
@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_a_closed_loop_is_collected(loop_kind: str, leave_open: bool) -> None:
    import uvloop

    loop = asyncio.new_event_loop() if loop_kind == "asyncio" else uvloop.new_event_loop()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # the socket left open, on purpose
        try:
            loop.run_until_complete(_serve_once(leave_open))
        finally:
            loop.close()
        dead = weakref.ref(loop)
        del loop
        gc.collect()
    assert dead() is None, "the closed loop is still referenced"


# --- 7: the one use of private asyncio API fails loudly if asyncio changes it -------------------


HOOKS_CHANGED = (
    "asyncio.tasks._enter_task/_leave_task no longer make a task the current one: the C "
    "reactor's fibers rely on them (task_hooks() in namewire/transport/_native_stream.py)"
)


def test_asyncio_task_hooks_still_make_a_task_current(sockets_impl: str) -> None:
    native_only(sockets_impl)
    enter, leave = _native_stream.task_hooks()
    loop = asyncio.new_event_loop()
    seen: list[object] = []

    async def idle() -> None:
        await asyncio.sleep(0)

    task = loop.create_task(idle())

    def outside_any_task() -> None:
        seen.append(asyncio.current_task(loop))
        enter(loop, task)
        try:
            seen.append(asyncio.current_task(loop))
        finally:
            leave(loop, task)
        seen.append(asyncio.current_task(loop))

    try:
        loop.call_soon(outside_any_task)
        loop.run_until_complete(task)
    finally:
        loop.close()
    assert seen == [None, task, None], HOOKS_CHANGED


def test_missing_task_hooks_are_named(sockets_impl: str, monkeypatch: pytest.MonkeyPatch) -> None:
    native_only(sockets_impl)
    monkeypatch.delattr(asyncio.tasks, "_enter_task")
    with pytest.raises(RuntimeError, match=r"needs asyncio\.tasks\._enter_task and _leave_task"):
        _native_stream.task_hooks()

"""`NativeFrameStream`: the session-mode `Stream` on the C reactor, driven through its handler.

The peer is a plain socket, so every byte on the wire is the test's own.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import socket
import struct
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from namewire.errors import ConnectionReset, FrameTooLarge
from namewire.transport import _native_stream
from namewire.transport._streams import WRITE_HIGH_WATER, Stream
from namewire.wire import encode_frame

WAIT = 5.0


@pytest.fixture(autouse=True)
def native_only(sockets_impl: str) -> None:
    if sockets_impl != "native":
        pytest.skip("NativeFrameStream runs on the C reactor only")


class Recorder:
    """A `StreamHandler` that records what it is told."""

    def __init__(self) -> None:
        self.batches: list[list[bytes]] = []
        self.events: list[str] = []
        self.lost: list[BaseException | None] = []
        self.callers: set[str] = set()
        self.on_frames: Callable[[list[bytes]], None] | None = None

    def data_received(self, data: bytes) -> None:
        raise AssertionError("a stream that cuts frames must not hand out bytes")

    def frames_received(self, frames: list[bytes]) -> None:
        self.callers.add(sys._getframe(1).f_code.co_filename)
        self.batches.append(frames)
        if self.on_frames is not None:
            self.on_frames(frames)

    def writing_paused(self) -> None:
        self.events.append("paused")

    def writing_resumed(self) -> None:
        self.events.append("resumed")

    def stream_lost(self, exc: BaseException | None) -> None:
        self.lost.append(exc)

    @property
    def frames(self) -> list[bytes]:
        return [frame for batch in self.batches for frame in batch]


async def eventually(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


@pytest.fixture(params=["tcp", "unix"])
async def pair(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[_native_stream.NativeFrameStream, socket.socket]]:
    """(a NativeFrameStream, the plain non-blocking socket at its other end)."""
    if request.param == "tcp":
        server = socket.create_server(("127.0.0.1", 0))
        peer = socket.create_connection(server.getsockname())
        peer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ours, _ = server.accept()
        server.close()
    else:
        ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.setblocking(False)
    stream = _native_stream.NativeFrameStream(ours)
    try:
        yield stream, peer
    finally:
        stream.abort()
        peer.close()


async def read_all(peer: socket.socket, size: int) -> bytes:
    loop = asyncio.get_running_loop()
    data = bytearray()
    while len(data) < size:
        chunk = await asyncio.wait_for(loop.sock_recv(peer, size - len(data)), WAIT)
        if not chunk:
            break
        data += chunk
    return bytes(data)


async def read_until_eof(peer: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    data = bytearray()
    while chunk := await asyncio.wait_for(loop.sock_recv(peer, 1 << 20), WAIT):
        data += chunk
    return bytes(data)


def bodies(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        (size,) = struct.unpack_from(">I", data, pos)
        out.append(data[pos + 4 : pos + 4 + size])
        pos += 4 + size
    assert pos == len(data)
    return out


async def test_it_is_a_complete_stream(pair: Any) -> None:
    stream, _ = pair
    assert isinstance(stream, Stream)
    assert not type(stream).__abstractmethods__
    assert stream.cuts_frames and not stream.takes_frames
    assert stream.local_address.startswith(("tcp://", "unix://"))
    assert stream.peer_address.startswith(("tcp://", "unix://"))
    assert stream.where


async def test_frames_cut_anywhere_arrive_whole_and_in_order(pair: Any) -> None:
    stream, peer = pair
    handler = Recorder()
    stream.start(handler, max_frame=1 << 20)
    rng = random.Random(7)
    sizes = [rng.choice([0, 1, 3, 4, 5, 100, 4000, 70_000, 300_000]) for _ in range(300)]
    frames = [rng.randbytes(size) for size in sizes]
    wire = b"".join(map(encode_frame, frames))
    loop = asyncio.get_running_loop()
    pos = 0
    while pos < len(wire):
        cut = pos + rng.choice([1, 2, 3, 4, 5, 7, 100, 5000, 80_000, 400_000])
        await loop.sock_sendall(peer, wire[pos:cut])
        pos = cut
        if rng.random() < 0.3:
            await asyncio.sleep(0.001)  # let the reactor read a part on its own
    await eventually(lambda: len(handler.frames) == len(frames), "every frame")
    assert handler.frames == frames
    assert all(type(batch) is list and batch for batch in handler.batches)
    # Called by the reactor itself: no Python frame of the stream in between.
    assert not any(name.endswith("_native_stream.py") for name in handler.callers)
    assert handler.lost == []


async def test_the_frames_of_one_read_come_as_one_list(pair: Any) -> None:
    stream, peer = pair
    handler = Recorder()
    stream.start(handler, max_frame=1024)
    frames = [b"frame %d" % i for i in range(10)]
    peer.send(b"".join(map(encode_frame, frames)))
    await eventually(lambda: len(handler.frames) == 10, "the frames")
    assert handler.batches == [frames]


async def test_a_write_is_sent_at_once(pair: Any) -> None:
    """The session joins what one loop turn writes and decides when to write early (every 32
    frames, so that a peer can start on the first replies of a batch); the stream must not hold
    a write back until the end of the turn."""
    stream, peer = pair
    handler = Recorder()
    stream.start(handler, max_frame=1024)
    before = stream.send_calls
    frames = [b"out %d" % i for i in range(50)]
    stream.write(b"".join(map(encode_frame, frames[:25])))
    assert stream.send_calls - before == 1 and stream.write_buffer_size() == 0
    stream.write(b"".join(map(encode_frame, frames[25:])))
    assert stream.send_calls - before == 2 and stream.write_buffer_size() == 0
    assert bodies(await read_all(peer, sum(len(f) + 4 for f in frames))) == frames


async def test_writes_made_while_handling_a_read_leave_before_the_handler_returns(
    pair: Any,
) -> None:
    stream, peer = pair
    handler = Recorder()
    sent_during: list[int] = []

    def echo(frames: list[bytes]) -> None:
        before = stream.send_calls
        for half in (frames[:10], frames[10:]):
            stream.write(b"".join(map(encode_frame, half)))
        sent_during.append(stream.send_calls - before)

    handler.on_frames = echo
    stream.start(handler, max_frame=1024)
    frames = [b"ping %d" % i for i in range(20)]
    peer.send(b"".join(map(encode_frame, frames)))
    assert bodies(await read_all(peer, sum(len(f) + 4 for f in frames))) == frames
    assert len(handler.batches) == 1
    assert sent_during == [2]


async def test_pause_and_resume_reading(pair: Any) -> None:
    stream, peer = pair
    handler = Recorder()
    stream.pause_reading()  # before start: start() does not undo it
    stream.start(handler, max_frame=1024)
    peer.send(encode_frame(b"one"))
    await asyncio.sleep(0.1)
    assert handler.batches == []
    stream.resume_reading()
    await eventually(lambda: handler.frames == [b"one"], "the first frame")
    stream.pause_reading()
    peer.send(encode_frame(b"two"))
    await asyncio.sleep(0.1)
    assert handler.frames == [b"one"]
    stream.resume_reading()
    await eventually(lambda: handler.frames == [b"one", b"two"], "the second frame")
    assert handler.lost == []


async def test_writing_paused_and_resumed_around_a_peer_that_does_not_read(pair: Any) -> None:
    stream, peer = pair
    handler = Recorder()
    stream.start(handler, max_frame=1024)
    chunk = encode_frame(bytes(60_000))
    sent = 0
    while "paused" not in handler.events:
        stream.write(chunk)
        sent += len(chunk)
        assert sent < 200 * 1024 * 1024, "writing never paused"
    assert handler.events == ["paused"]
    assert stream.write_buffer_size() > WRITE_HIGH_WATER
    await asyncio.sleep(0.05)
    assert handler.events == ["paused"]  # nobody reads: still paused
    received = await read_all(peer, sent)
    assert len(received) == sent
    await eventually(lambda: handler.events == ["paused", "resumed"], "writing_resumed")
    assert stream.write_buffer_size() <= WRITE_HIGH_WATER // 4


async def test_oversize_frame_ends_the_stream_with_frame_too_large(pair: Any) -> None:
    stream, peer = pair
    handler = Recorder()
    stream.start(handler, max_frame=1024)
    peer.send(encode_frame(b"fine") + struct.pack(">I", 2000) + b"xx")
    await eventually(lambda: handler.lost, "stream_lost")
    assert handler.frames == [b"fine"]  # the frames before the bad one are delivered
    (exc,) = handler.lost
    assert isinstance(exc, FrameTooLarge)
    assert (exc.size, exc.limit) == (2000, 1024)
    assert str(exc) == f"frame of 2000 bytes exceeds limit of 1024 bytes (from {stream.where})"
    assert await read_until_eof(peer) == b""  # and the connection is closed


async def test_clean_end_between_frames(pair: Any) -> None:
    stream, peer = pair
    handler = Recorder()
    stream.start(handler, max_frame=1024)
    peer.send(encode_frame(b"last"))
    peer.shutdown(socket.SHUT_WR)
    await eventually(lambda: handler.lost, "stream_lost")
    assert handler.frames == [b"last"]
    assert handler.lost == [None]


async def test_end_in_the_middle_of_a_frame(pair: Any) -> None:
    stream, peer = pair
    handler = Recorder()
    stream.start(handler, max_frame=1024)
    peer.send(encode_frame(b"whole") + struct.pack(">I", 100) + bytes(10))
    await eventually(lambda: handler.frames == [b"whole"], "the whole frame")
    peer.shutdown(socket.SHUT_WR)
    await eventually(lambda: handler.lost, "stream_lost")
    (exc,) = handler.lost
    assert type(exc) is ConnectionReset
    assert str(exc) == (
        f"connection closed by {stream.where} in the middle of a frame (14 bytes of it received)"
    )


async def test_reset_by_the_peer(pair: Any) -> None:
    stream, peer = pair
    if peer.family == socket.AF_UNIX:
        pytest.skip("a Unix socket cannot be reset")
    handler = Recorder()
    stream.start(handler, max_frame=1024)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()  # RST
    await eventually(lambda: handler.lost, "stream_lost")
    (exc,) = handler.lost
    assert type(exc) is ConnectionReset
    assert str(exc) == f"connection reset by {stream.where}"


async def test_close_flushes_what_is_queued(pair: Any) -> None:
    stream, peer = pair
    handler = Recorder()
    stream.start(handler, max_frame=1024)
    frames = [os.urandom(50_000) for _ in range(40)]  # 2 MB: more than the kernel takes at once
    for frame in frames:
        stream.write(encode_frame(frame))
    stream.close()
    assert handler.lost == []  # not from inside close()
    await asyncio.sleep(0.1)  # a slow reader
    assert bodies(await read_until_eof(peer)) == frames
    await eventually(lambda: handler.lost, "stream_lost")
    assert handler.lost == [None]


async def test_close_gives_up_after_its_linger(pair: Any) -> None:
    stream, _ = pair
    handler = Recorder()
    stream.start(handler, max_frame=1024)
    for _ in range(200):  # 12 MB that nobody reads
        stream.write(encode_frame(bytes(60_000)))
    started = time.monotonic()
    stream.close()
    await eventually(lambda: handler.lost, "stream_lost")
    assert 0.8 < time.monotonic() - started < 3.0
    # Output was dropped: the handler is told so, with how much, not a clean close.
    [lost] = handler.lost
    assert isinstance(lost, ConnectionReset)
    assert "bytes still unsent" in str(lost) and "waiting 1s" in str(lost)
    assert not stream.attached


async def test_abort_drops_what_is_queued(pair: Any) -> None:
    stream, peer = pair
    handler = Recorder()
    stream.start(handler, max_frame=1024)
    total = 0
    for _ in range(200):
        chunk = encode_frame(bytes(60_000))
        stream.write(chunk)
        total += len(chunk)
    stream.abort()
    assert not stream.attached
    stream.write(b"\0\0\0\1x")  # dropped, not raised
    assert stream.write_buffer_size() == 0
    assert len(await read_until_eof(peer)) < total
    await eventually(lambda: handler.lost, "stream_lost")
    assert handler.lost == [None]


async def test_stream_lost_is_reported_exactly_once(pair: Any) -> None:
    stream, peer = pair
    handler = Recorder()
    stream.start(handler, max_frame=1024)
    peer.send(struct.pack(">I", 5000))  # oversize, then every other way to end it
    await eventually(lambda: handler.lost, "stream_lost")
    stream.close()
    stream.abort()
    peer.close()
    await asyncio.sleep(0.05)
    assert len(handler.lost) == 1
    assert isinstance(handler.lost[0], FrameTooLarge)


async def test_nothing_is_reported_before_start(pair: Any) -> None:
    stream, peer = pair
    peer.send(encode_frame(b"early"))
    await asyncio.sleep(0.05)
    handler = Recorder()
    stream.start(handler, max_frame=1024)
    await eventually(lambda: handler.frames == [b"early"], "the early frame")
    with pytest.raises(RuntimeError):
        stream.start(Recorder(), max_frame=1024)


def live_streams() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, _native_stream.NativeFrameStream))


async def test_no_leak_after_200_connections() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    loop = asyncio.get_running_loop()
    fds_before = len(os.listdir("/proc/self/fd"))
    streams_before = live_streams()
    try:
        for i in range(200):
            peer = socket.create_connection(server.getsockname())
            ours, _ = await loop.sock_accept(server)
            ours.setblocking(False)
            stream = _native_stream.NativeFrameStream(ours)
            handler = Recorder()

            def echo(frames: list[bytes], stream: Any = stream) -> None:
                for frame in frames:
                    stream.write(encode_frame(frame))

            handler.on_frames = echo
            stream.start(handler, max_frame=1024)
            peer.setblocking(False)
            await loop.sock_sendall(peer, encode_frame(b"%d" % i))
            assert bodies(await read_all(peer, len(encode_frame(b"%d" % i)))) == [b"%d" % i]
            if i % 2:
                stream.close()
            else:
                peer.close()
            await eventually(lambda h=handler: bool(h.lost), "stream_lost")  # type: ignore[misc]
            peer.close()
            del stream, handler, echo
        # Releases may wait a loop turn or a collection: wait for them, but they must come.
        await eventually(lambda: loop not in _native_stream._reactors,
                         "the reactor released with its last connection")
        await eventually(lambda: gc.collect() >= 0 and live_streams() == streams_before,
                         "every stream collected")
        await eventually(lambda: len(os.listdir("/proc/self/fd")) == fds_before,
                         f"the fd count back to {fds_before}")
    finally:
        server.close()


_OUT_OF_MEMORY_CHILD = r"""
import asyncio, resource, socket, sys
from namewire.transport import _native_stream


class Handler:
    def __init__(self):
        self.lost = asyncio.get_running_loop().create_future()
    def frames_received(self, frames):
        pass
    def writing_paused(self):
        pass
    def writing_resumed(self):
        pass
    def stream_lost(self, exc):
        self.lost.set_result(exc)


async def main():
    ours, peer = socket.socketpair()
    ours.setblocking(False)
    peer.setblocking(False)
    handler = Handler()
    stream = _native_stream.NativeFrameStream(ours)
    stream.start(handler, max_frame=2**32 - 1)
    # From here on memory is short: a frame announced at 4 GiB cannot be assembled.
    size = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (size + (128 << 20), resource.RLIM_INFINITY))
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(peer, (2**32 - 1).to_bytes(4, "big"))
    chunk = bytes(1 << 20)
    sent = 0
    while not handler.lost.done() and sent < 1536:
        try:
            await asyncio.wait_for(loop.sock_sendall(peer, chunk), 0.5)
        except (TimeoutError, OSError):
            break
        sent += 1
    exc = await asyncio.wait_for(handler.lost, 10)
    print(type(exc).__name__, exc, flush=True)


asyncio.run(main())
"""


def test_running_out_of_memory_mid_frame_ends_the_connection_with_a_reason() -> None:
    # Before: the reactor stopped reading in silence and the connection hung for good.
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c", _OUT_OF_MEMORY_CHILD],
        capture_output=True,
        text=True,
        timeout=40,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("ConnectionReset"), out.stdout + out.stderr[-2000:]
    assert "Cannot allocate memory" in out.stdout

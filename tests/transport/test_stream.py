"""StreamSocket over real loopback sockets: framing, ordering, big packets, raw mode, end of stream."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from typing import Any

import pytest

from namewire.errors import ConnectionReset, TransportError
from namewire.transport import StreamSocket, connect, listen
from namewire.wire import encode_frame

from .conftest import raw_connect, raw_recv_exactly


async def stream(url: str, **options: Any) -> StreamSocket:
    sock = await connect(url, **options)
    assert isinstance(sock, StreamSocket)
    return sock


async def test_round_trip_and_addresses(echo_listener: Any, stream_url: str) -> None:
    assert echo_listener.address.startswith(stream_url.split(":")[0] + "://")
    assert not echo_listener.address.endswith(":0")
    sock = await stream(echo_listener.address)
    try:
        await sock.send(b"hello")
        assert await sock.recv() == b"hello"
        await sock.send(b"")
        assert await sock.recv() == b""
        assert sock.peer_address == echo_listener.address
        assert sock.local_address.startswith(stream_url[:4])
    finally:
        await sock.close()
    assert sock.closed


async def test_frame_written_byte_by_byte_is_one_packet(echo_listener: Any) -> None:
    raw = await raw_connect(echo_listener.address)
    loop = asyncio.get_running_loop()
    try:
        body = b"partial frames across many reads"
        frame = encode_frame(body) + encode_frame(b"next")
        for i in range(len(frame)):
            await loop.sock_sendall(raw, frame[i : i + 1])
            await asyncio.sleep(0.002)  # let the server read each byte on its own
        assert await raw_recv_exactly(raw, len(frame)) == frame
    finally:
        raw.close()


async def test_ten_megabyte_packets_round_trip(echo_listener: Any) -> None:
    sock = await stream(echo_listener.address)
    try:
        big = os.urandom(1024) * (10 * 1024)
        for _ in range(2):
            await sock.send(big)
            assert await sock.recv() == big
    finally:
        await sock.close()


async def test_a_thousand_pipelined_packets_arrive_in_order(echo_listener: Any) -> None:
    sock = await stream(echo_listener.address)
    try:
        for i in range(1000):
            await sock.send(b"packet %d" % i)
        for i in range(1000):
            assert await sock.recv() == b"packet %d" % i
    finally:
        await sock.close()


async def test_raw_mode_passes_bytes_through(stream_url: str) -> None:
    async with await listen(stream_url, _raw_echo, framed=False) as listener:
        sock = await stream(listener.address, framed=False)
        try:
            await sock.send(b"no length prefix")
            received = b""
            while len(received) < 16:
                chunk = await sock.recv()
                assert chunk is not None
                received += chunk
            assert received == b"no length prefix"
        finally:
            await sock.close()


async def _raw_echo(sock: StreamSocket) -> None:
    while (chunk := await sock.recv()) is not None:
        await sock.send(chunk)


async def test_clean_eof_returns_none_after_queued_packets(fresh_url: str) -> None:
    server_side: asyncio.Future[list[bytes | None]] = asyncio.get_running_loop().create_future()

    async def collect(sock: StreamSocket) -> None:
        await asyncio.sleep(0.05)  # let both frames and the EOF arrive before reading
        got: list[bytes | None] = []
        while True:
            packet = await sock.recv()
            got.append(packet)
            if packet is None:
                break
        assert await sock.recv() is None  # stays at end of stream
        server_side.set_result(got)

    async with await listen(fresh_url, collect) as listener:
        await raw_closes_after(listener.address, encode_frame(b"a") + encode_frame(b"b"))
        assert await asyncio.wait_for(server_side, 5) == [b"a", b"b", None]


async def raw_closes_after(url: str, data: bytes) -> None:
    raw = await raw_connect(url)
    await asyncio.get_running_loop().sock_sendall(raw, data)
    raw.close()


@pytest.fixture
def fresh_url(stream_url: str, short_tmp: str) -> str:
    """A second listening URL of the same kind (the echo listener already holds the first)."""
    if stream_url.startswith("unix"):
        return f"unix://{os.path.join(short_tmp, 'other')}"
    return stream_url


async def test_eof_in_the_middle_of_a_frame_is_an_error(fresh_url: str) -> None:
    errors: asyncio.Queue[BaseException] = asyncio.Queue()

    async def handler(sock: StreamSocket) -> None:
        try:
            await sock.recv()
        except TransportError as exc:
            errors.put_nowait(exc)

    async with await listen(fresh_url, handler) as listener:
        await raw_closes_after(listener.address, struct.pack(">I", 100) + b"x" * 40)
        exc = await asyncio.wait_for(errors.get(), 5)
    assert isinstance(exc, ConnectionReset)
    assert "in the middle of a frame (44 bytes of it received)" in str(exc)
    assert listener.address.split("//")[1].split(":")[0] in str(exc)


async def test_send_after_close_and_after_peer_loss(echo_listener: Any) -> None:
    sock = await stream(echo_listener.address)
    await sock.close()
    with pytest.raises(TransportError, match="is closed"):
        await sock.send(b"late")
    assert await sock.recv() is None


async def test_close_wakes_a_waiting_recv(echo_listener: Any) -> None:
    sock = await stream(echo_listener.address)
    waiting = asyncio.create_task(sock.recv())
    await asyncio.sleep(0.01)
    await sock.close()
    assert await asyncio.wait_for(waiting, 5) is None


async def test_cancelled_recv_loses_no_packet(echo_listener: Any) -> None:
    sock = await stream(echo_listener.address)
    try:
        for i in range(50):
            waiting = asyncio.create_task(sock.recv())
            await asyncio.sleep(0)
            await sock.send(b"%d" % i)
            # Cancel at whatever point the echo has reached; the packet must not be lost.
            await asyncio.sleep(0.0005 * (i % 5))
            waiting.cancel()
            try:
                got = await waiting
            except asyncio.CancelledError:
                got = await asyncio.wait_for(sock.recv(), 5)
            assert got == b"%d" % i
    finally:
        await sock.close()


async def test_only_one_task_may_wait_in_recv(echo_listener: Any) -> None:
    sock = await stream(echo_listener.address)
    try:
        first = asyncio.create_task(sock.recv())
        await asyncio.sleep(0.01)
        with pytest.raises(RuntimeError, match="already awaited"):
            await sock.recv()
        await sock.send(b"x")
        assert await first == b"x"
    finally:
        await sock.close()


async def test_sends_of_one_turn_leave_in_one_write_native(
    echo_listener: Any, sockets_impl: str
) -> None:
    if sockets_impl != "native":
        pytest.skip("the C reactor's send counter")
    sock = await stream(echo_listener.address)
    try:
        before = sock.send_calls  # type: ignore[attr-defined]
        for i in range(100):
            await sock.send(b"%03d" % i)
        await asyncio.sleep(0)
        assert sock.send_calls - before == 1  # type: ignore[attr-defined]
        for i in range(100):
            assert await sock.recv() == b"%03d" % i
    finally:
        await sock.close()


async def test_sends_of_one_turn_leave_in_one_write(echo_listener: Any, sockets_impl: str) -> None:
    loop = asyncio.get_running_loop()
    if sockets_impl == "native":
        pytest.skip("the pure-asyncio socket's transport")
    if type(loop).__module__.startswith("uvloop"):
        pytest.skip("uvloop batches writes per loop iteration itself (and its transport is sealed)")
    sock = await stream(echo_listener.address)
    try:
        transport = sock._transport
        assert transport is not None
        writes: list[int] = []
        original = transport.write

        def counting_write(data: bytes) -> None:
            writes.append(len(data))
            original(data)

        transport.write = counting_write  # type: ignore[method-assign]
        for i in range(100):
            await sock.send(b"%03d" % i)
        await asyncio.sleep(0)
        assert writes == [100 * 7]
        for i in range(100):
            assert await sock.recv() == b"%03d" % i
    finally:
        await sock.close()


async def test_a_cancelled_close_still_delivers_what_was_sent(stream_url: str) -> None:
    """close() lingers to flush what is buffered. Cancelling that close (a task cancelled while it
    closes) must not drop the output: it drains in the background, then the connection ends."""
    start_reading = asyncio.Event()
    received: list[bytes | None] = []

    async def slow_reader(sock: StreamSocket) -> None:
        await start_reading.wait()
        while (packet := await sock.recv()) is not None:
            received.append(packet)
        received.append(None)

    packets = [i.to_bytes(4, "big") * (256 * 1024) for i in range(48)]  # 48 x 1 MiB
    async with await listen(stream_url, slow_reader) as listener:
        sock = await stream(listener.address)
        for packet in packets:
            # The reader does not read: once the socket buffers are full, send() buffers the
            # packet and waits for a drain that does not come.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sock.send(packet), 0.01)
        closing = asyncio.ensure_future(sock.close(linger=10.0))
        await asyncio.sleep(0.05)
        assert not closing.done(), "close() returned while 48 MiB could not have been sent"
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing
        start_reading.set()
        async with asyncio.timeout(20):
            while not received or received[-1] is not None:
                await asyncio.sleep(0.01)
        assert received[:-1] == packets
        assert sock.closed

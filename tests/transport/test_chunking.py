"""Frames of any size, cut into writes at any points, arrive whole and in order, and come back
byte for byte: the framing of both stream-socket implementations against a raw peer.

The sizes aim at the C reactor's edges as well: an empty frame, a header split across reads, a
body that fills its 256 KiB read buffer exactly or by one byte more (read straight into the packet
from there on), and frames that the output buffer must send in parts.
"""

from __future__ import annotations

import asyncio

import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from namewire.transport import StreamSocket, listen
from namewire.wire import encode_frame

from .conftest import raw_connect, raw_recv_exactly

READ_BUFFER = 256 * 1024  # the C reactor's read buffer (SCRATCH_SIZE in _native.c)

sizes = st.lists(
    st.one_of(
        st.integers(0, 16),
        st.integers(0, 70_000),
        st.sampled_from([READ_BUFFER - 4, READ_BUFFER - 1, READ_BUFFER, READ_BUFFER + 1, 700_000]),
    ),
    min_size=1,
    max_size=8,
)


def body(index: int, size: int) -> bytes:
    """A body no other frame of the test shares, so a swap or a shift cannot pass unseen."""
    return ((index.to_bytes(2, "big") + size.to_bytes(4, "big")) * (size // 6 + 1))[:size]


async def scenario(frame_sizes: list[int], cuts: list[int], pause: bool) -> None:
    received: list[int] = []

    async def echo(sock: StreamSocket) -> None:
        while (packet := await sock.recv()) is not None:
            received.append(len(packet))
            await sock.send(packet)

    frames = [encode_frame(body(i, n)) for i, n in enumerate(frame_sizes)]
    data = b"".join(frames)
    points = sorted({c % len(data) for c in cuts} - {0})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    loop = asyncio.get_running_loop()
    async with await listen("tcp://127.0.0.1:0", echo, max_frame=1024 * 1024) as listener:
        raw = await raw_connect(listener.address)
        try:

            async def write() -> None:
                for chunk in chunks:
                    await loop.sock_sendall(raw, chunk)
                    if pause:
                        await asyncio.sleep(0.001)  # let each piece arrive as a read of its own

            async with asyncio.timeout(20):
                _, echoed = await asyncio.gather(write(), raw_recv_exactly(raw, len(data)))
            assert echoed == data
            assert received == frame_sizes
        finally:
            raw.close()


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    frame_sizes=sizes,
    cuts=st.lists(st.integers(1, 3_000_000), max_size=12),
    pause=st.booleans(),
    on_uvloop=st.booleans(),
)
def test_any_frames_cut_anywhere_arrive_whole(
    frame_sizes: list[int], cuts: list[int], pause: bool, on_uvloop: bool, sockets_impl: str
) -> None:
    run = uvloop.run if on_uvloop else asyncio.run
    run(scenario(frame_sizes, cuts, pause))


def test_a_header_split_around_the_end_of_the_frame_before_it(sockets_impl: str) -> None:
    """One byte of the next header arrives with the end of a frame, the rest in later reads."""
    first = len(encode_frame(body(0, 10)))
    asyncio.run(scenario([10, 3], [first + 1, first + 3], pause=True))

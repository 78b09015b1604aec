"""Fixtures for the transport tests: every async test runs on both the asyncio loop and uvloop."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import pytest
import uvloop

from namewire.transport import parse_address


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture(autouse=True, params=["native", "python"])
def sockets_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every transport test runs on both stream-socket implementations: the C reactor and the
    pure-asyncio protocol (what a machine without the extension gets)."""
    from namewire.transport import _native_stream

    if request.param == "native":
        if _native_stream._native is None and sys.platform == "linux" and shutil.which("cc"):
            # The build is optional so that installs never fail, but it must not fail unnoticed.
            pytest.fail("the C reactor is not built although a C compiler is here: run make setup")
        if not _native_stream.available():
            pytest.skip("the C reactor is not built here")
    else:
        monkeypatch.setenv("NAMEWIRE_NATIVE", "0")
    return str(request.param)


@pytest.fixture
def short_tmp() -> Iterator[str]:
    """A short temporary directory: Unix socket paths are limited to about 100 bytes."""
    path = tempfile.mkdtemp(prefix="nw-", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=["tcp", "unix"])
def stream_url(request: pytest.FixtureRequest, short_tmp: str) -> str:
    """A URL to listen on: a free TCP port on loopback, or a Unix socket in a temporary directory."""
    if request.param == "tcp":
        return "tcp://127.0.0.1:0"
    return f"unix://{os.path.join(short_tmp, 'sock')}"


async def raw_connect(url: str) -> socket.socket:
    """A plain non-blocking socket connected to a tcp:// or unix:// URL, for byte-level tests."""
    address = parse_address(url)
    if address.scheme == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target: Any = address.path
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        target = (address.host, address.port)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, target)
    return sock


async def raw_recv_exactly(sock: socket.socket, size: int) -> bytes:
    loop = asyncio.get_running_loop()
    data = bytearray()
    while len(data) < size:
        chunk = await loop.sock_recv(sock, size - len(data))
        if not chunk:
            raise EOFError(f"EOF after {len(data)} of {size} bytes")
        data += chunk
    return bytes(data)


async def echo(sock: Any) -> None:
    """The plainest echo handler."""
    while (packet := await sock.recv()) is not None:
        await sock.send(packet)


@pytest.fixture
async def echo_listener(stream_url: str) -> AsyncIterator[Any]:
    from namewire.transport import listen

    async with await listen(stream_url, echo) as listener:
        yield listener

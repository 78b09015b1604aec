"""DatagramSocket over loopback UDP: bind, connect, listen, size limits, errors, closing."""

from __future__ import annotations

import asyncio
import socket

import pytest

from namewire.errors import ConnectionRefused, DatagramTooLarge, TransportError
from namewire.transport import DatagramSocket, bind, connect, listen


async def udp_client(url: str) -> DatagramSocket:
    sock = await connect(url)
    assert isinstance(sock, DatagramSocket)
    return sock


async def test_bound_and_connected_sockets_talk() -> None:
    server = await bind("udp://127.0.0.1:0")
    client = await udp_client(server.local_address)
    try:
        assert server.local_address.startswith("udp://127.0.0.1:")
        assert client.peer_address == server.local_address
        await client.send(b"ping")
        data, sender = await asyncio.wait_for(server.recvfrom(), 5)
        assert (data, sender) == (b"ping", client.local_address)
        server.sendto(b"pong", sender)
        assert await asyncio.wait_for(client.recv(), 5) == b"pong"
    finally:
        await client.close()
        await server.close()


async def test_listen_runs_the_handler_with_the_bound_socket() -> None:
    async def udp_echo(sock: DatagramSocket) -> None:
        while True:
            data, sender = await sock.recvfrom()
            sock.sendto(data.upper(), sender)

    async with await listen("udp://127.0.0.1:0", udp_echo) as listener:
        assert listener.address.startswith("udp://127.0.0.1:")
        assert not listener.address.endswith(":0")
        client = await udp_client(listener.address)
        try:
            for word in (b"one", b"two", b"three"):
                await client.send(word)
                assert await asyncio.wait_for(client.recv(), 5) == word.upper()
        finally:
            await client.close()


async def test_oversize_datagram_to_send_is_refused() -> None:
    server = await bind("udp://127.0.0.1:0")
    try:
        with pytest.raises(
            DatagramTooLarge,
            match=rf"datagram of 70000 bytes exceeds limit of 65507 bytes \(to {server.local_address}\)",
        ):
            server.sendto(b"x" * 70000, server.local_address)
    finally:
        await server.close()


async def test_oversize_datagram_received_raises_once_then_goes_on() -> None:
    server = await bind("udp://127.0.0.1:0", max_datagram=100)
    client = await udp_client(server.local_address)
    try:
        await client.send(b"b" * 200)
        await client.send(b"small")
        with pytest.raises(DatagramTooLarge) as caught:
            await asyncio.wait_for(server.recvfrom(), 5)
        assert str(caught.value) == (
            f"datagram of 200 bytes exceeds limit of 100 bytes (from {client.local_address})"
        )
        assert await asyncio.wait_for(server.recvfrom(), 5) == (b"small", client.local_address)
    finally:
        await client.close()
        await server.close()


async def test_connected_socket_reports_nobody_listening() -> None:
    spare = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    spare.bind(("127.0.0.1", 0))
    port = spare.getsockname()[1]
    spare.close()
    client = await udp_client(f"udp://127.0.0.1:{port}")
    try:
        await client.send(b"anyone?")
        with pytest.raises(
            ConnectionRefused, match=f"connection refused by udp://127.0.0.1:{port}"
        ):
            await asyncio.wait_for(client.recv(), 5)
    finally:
        await client.close()


async def test_close_wakes_receivers() -> None:
    sock = await bind("udp://127.0.0.1:0")
    waiting = asyncio.create_task(sock.recvfrom())
    await asyncio.sleep(0.01)
    await sock.close()
    with pytest.raises(TransportError, match="is closed"):
        await asyncio.wait_for(waiting, 5)
    assert await sock.recv() is None
    with pytest.raises(TransportError, match="is closed"):
        sock.sendto(b"late", "udp://127.0.0.1:9")


async def test_full_queue_drops_and_counts() -> None:
    server = await bind("udp://127.0.0.1:0", queue_limit=1000)
    client = await udp_client(server.local_address)
    try:
        for _ in range(30):
            await client.send(b"d" * 100)
        await asyncio.sleep(0.1)
        assert server.dropped == 20
        for _ in range(10):
            assert (await server.recvfrom())[0] == b"d" * 100
    finally:
        await client.close()
        await server.close()


async def test_bind_errors_name_the_address() -> None:
    first = await bind("udp://127.0.0.1:0")
    try:
        with pytest.raises(TransportError, match=f"cannot bind {first.local_address}"):
            await bind(first.local_address)
    finally:
        await first.close()

"""A node keeps serving when a peer sends garbage, an oversize frame, or speaks JSON."""

from __future__ import annotations

import asyncio
import struct

import pytest

import namewire
from tests.conftest import Processes
from tests.node.test_by_name import wait_for_name

pytestmark = pytest.mark.timeout(60)


def tcp_address(registration) -> tuple[str, int]:
    url = next(a for a in registration.addresses if a.startswith("tcp://"))
    host, port = url.removeprefix("tcp://").rsplit(":", 1)
    return host, int(port)


async def test_garbage_and_oversize_frames_close_only_that_connection(procs: Processes) -> None:
    ns, _ = procs.nameservice()
    worker = procs.service("worker.py", "A", ns)
    me = namewire.Node("tester")
    async with me.serve(nameservice=ns, listen=None):
        host, port = tcp_address(await wait_for_name(me, "A"))
        assert await me.rpc_call("A", "plus", 1, 2) == 3
        for junk in (
            struct.pack(">I", 1 << 30),                     # 1 GiB announced: over the limit
            struct.pack(">I", 3) + b"\xc1\xc1\xc1",         # undecodable msgpack
            struct.pack(">I", 2) + b"\x92\x07",             # unknown kind
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",           # not namewire at all
        ):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(junk)
            await writer.drain()
            # The node hangs up on this connection...
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            # ...and keeps serving everyone else, this node's connection included.
            assert await me.rpc_call("A", "plus", 2, 3) == 5
        assert worker.poll() is None


async def test_same_host_peers_talk_over_a_unix_socket(procs: Processes) -> None:
    ns, _ = procs.nameservice()
    procs.service("worker.py", "A", ns)
    me = namewire.Node("tester")
    async with me.serve(nameservice=ns, listen=None):
        await wait_for_name(me, "A")
        await me.rpc_call("A", "plus", 1, 2)
        assert [origin.split("://")[0] for _, origin in me.peers] == ["unix"]


async def test_a_json_speaking_node_is_answered_in_json(procs: Processes) -> None:
    ns, _ = procs.nameservice()
    procs.service("worker.py", "A", ns)
    me = namewire.Node("json-tester", codec="json")
    async with me.serve(nameservice=ns, listen=None):
        await wait_for_name(me, "A")
        assert await me.rpc_call("A", "plus", [1], [2]) == [1, 2]
        with pytest.raises(namewire.EncodeError, match="json"):
            await me.rpc_call("A", "plus", b"bytes", b"!")
        assert await me.rpc_call("A", "plus", "a", "b") == "ab"

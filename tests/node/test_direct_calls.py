"""Direct calls: on the C reactor a connection answers plain synchronous functions itself
(`_native.c`, "direct calls"; `Node._refresh_direct`). What a caller gets must not change: the
same reply bytes as the Python codec writes, the same errors, each function called exactly once,
the same counts, and the node's rules (policy, tracing, a lost name) still applied.

A raw peer on a real socket speaks the frames itself, so each reply can be compared byte for byte
with what msgpack-python writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import math
import struct
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import pytest

import namewire
from namewire.wire._envelopes import KIND_CALL, KIND_REPLY
from tests.conftest import Processes
from tests.node.test_by_name import wait_for_name

pytestmark = pytest.mark.timeout(60)

native = pytest.importorskip("namewire.transport._native_stream")
if not native.native_sessions():
    pytest.skip("the C reactor is not in use: no direct calls", allow_module_level=True)


class Colour(enum.IntEnum):
    RED = 1


def server_node(name: str = "Direct", **options: Any) -> tuple[namewire.Node, list[Any]]:
    node = namewire.Node(name, **options)
    seen: list[Any] = []

    @node.function
    def echo(value: Any) -> Any:
        seen.append(value)
        return value

    @node.function
    def count() -> int:
        seen.append("count")
        return len(seen)

    @node.function
    def boom(why: str) -> None:
        seen.append("boom")
        raise ValueError(why)

    @node.function
    def unsendable() -> Any:
        seen.append("unsendable")
        return {1, 2}

    @node.function
    def colour() -> Colour:
        return Colour.RED  # an int subclass: the Python codec writes it

    async def later(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    @node.function
    def deferred(x: int) -> Any:
        seen.append("deferred")
        return later(x)  # a sync wrapper around a coroutine: run as a task

    @node.function(with_caller=True)
    def who(caller: namewire.Caller) -> str:
        return caller.name

    return node, seen


class RawPeer:
    """A peer speaking namewire frames on a socket of its own, msgpack, no library."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.next_id = 1

    def send(self, body: bytes) -> None:
        self.writer.write(struct.pack(">I", len(body)) + body)

    def call(self, func: str, args: bytes | list[Any], meta: Any = None) -> int:
        """Send a call; ``args`` already packed (bytes) or a list to pack. Returns its id."""
        call_id = self.next_id
        self.next_id += 1
        packed_args = args if isinstance(args, bytes) else msgpack.packb(args, use_bin_type=True)
        head = msgpack.packb([KIND_CALL, call_id, func], use_bin_type=True)
        body = bytes([0x95]) + head[1:] + packed_args + msgpack.packb(meta, use_bin_type=True)
        self.send(body)
        return call_id

    async def frame(self) -> bytes:
        (size,) = struct.unpack(">I", await asyncio.wait_for(self.reader.readexactly(4), 10))
        return await asyncio.wait_for(self.reader.readexactly(size), 10)

    async def replies(self, n: int) -> dict[int, bytes]:
        """The next ``n`` frames, by the id they answer."""
        out: dict[int, bytes] = {}
        for _ in range(n):
            body = await self.frame()
            out[msgpack.unpackb(body, raw=False, strict_map_key=False)[1]] = body
        return out


@contextlib.asynccontextmanager
async def raw_peer(node: namewire.Node) -> AsyncIterator[RawPeer]:
    host, port = next(a for a in node.addresses if a.startswith("tcp://"))[6:].rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    peer = RawPeer(reader, writer)
    peer.send(msgpack.packb([0, 1, "raw", {}], use_bin_type=True))
    hello = msgpack.unpackb(await peer.frame(), raw=False)
    assert hello[0] == 0 and hello[2] == node.name
    try:
        yield peer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def direct_calls(node: namewire.Node) -> int:
    """Calls the node's connections answered themselves (reading `connection` takes the count)."""
    total = 0
    for session in node._routes.sessions:
        session.connection  # noqa: B018 -- folds the stream's counts in
        total += session.direct_calls
    return total


def expected_reply(call_id: int, packed_args: bytes) -> bytes:
    """What the Python path answers echo(<args>) with: decode as the codec does, pack again."""
    (value,) = msgpack.unpackb(packed_args, raw=False, strict_map_key=False)
    return msgpack.packb([KIND_REPLY, call_id, value], use_bin_type=True)


VALUES: list[Any] = [
    None, True, False, 0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1,
    2**64 - 1, -1, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**63),
    0.0, -0.0, 1.5, -2.25e300, math.inf, -math.inf,
    "", "a", "x" * 31, "x" * 32, "x" * 255, "x" * 256, "x" * 65535, "x" * 65536, "héllo ☃ 🐍",
    b"", b"\x00\xff", b"b" * 255, b"b" * 256, b"b" * 70000,
    [], [1, [2, [3, []]]], list(range(15)), list(range(16)), list(range(70000)),
    {}, {"d": 1}, {1: "int key", "k": [None, {"x": b"y"}]}, {str(i): i for i in range(16)},
    [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],  # 40 deep
]


async def test_replies_are_byte_for_byte_what_the_python_codec_writes() -> None:
    node, seen = server_node()
    async with node.serve(standalone=True, listen="tcp://127.0.0.1:0"), raw_peer(node) as peer:
        packed = [msgpack.packb([v], use_bin_type=True) for v in VALUES]
        # A float32 and non-canonical ints decode to the same values the codec gives.
        packed += [b"\x91\xca" + struct.pack(">f", 0.5), b"\x91\xcd\x00\x05", b"\x91\xd3" + b"\0" * 8]
        ids = [peer.call("echo", p, {"d": 30000}) for p in packed]
        replies = await peer.replies(len(ids))
        for call_id, p in zip(ids, packed, strict=True):
            assert replies[call_id] == expected_reply(call_id, p), msgpack.unpackb(p)
        assert len(seen) == len(packed)  # each called once
        assert direct_calls(node) >= len(VALUES) - 1  # all but the 40-deep one, at least


async def test_what_the_shortcut_does_not_take_is_answered_as_before(
    caplog: pytest.LogCaptureFixture,
) -> None:
    node, seen = server_node()
    async with node.serve(standalone=True, listen="tcp://127.0.0.1:0"), raw_peer(node) as peer:
        ext = msgpack.packb([msgpack.ExtType(5, b"xyz")], use_bin_type=True)
        ids = {
            "ext": peer.call("echo", ext),
            "boom": peer.call("boom", ["no good"]),
            "unsendable": peer.call("unsendable", []),
            "colour": peer.call("colour", []),
            "deferred": peer.call("deferred", [21]),
            "who": peer.call("who", []),
            "missing": peer.call("nope", []),
            "no meta": peer.call("count", [], meta=None),
        }
        replies = {k: msgpack.unpackb(v, raw=False) for k, v in (await peer.replies(len(ids))).items()}
        got = {name: replies[i] for name, i in ids.items()}
        assert got["ext"] == [KIND_REPLY, ids["ext"], msgpack.ExtType(5, b"xyz")]
        assert got["boom"][2:5] == ["remote_error", "ValueError", "no good"]
        assert got["unsendable"][3] == "EncodeError" and "cannot send the result" in got["unsendable"][4]
        assert got["colour"] == [KIND_REPLY, ids["colour"], 1]
        assert got["deferred"] == [KIND_REPLY, ids["deferred"], 42]
        assert got["who"] == [KIND_REPLY, ids["who"], "raw"]
        assert got["missing"][3] == "NoSuchFunction"
        # Each function ran exactly once, even those the C side handed back after calling them.
        assert sorted(x for x in seen if isinstance(x, str)) == [
            "boom", "count", "deferred", "unsendable"]
        # ...and the failures are logged by the service, with its name, as on the Python path.
        logged = [r.getMessage() for r in caplog.records if r.name == "namewire.node"]
        assert any("Direct: remote function 'boom' called by 'raw' raised ValueError" in m
                   for m in logged), logged
        assert any("'unsendable'" in m for m in logged), logged


async def test_a_bad_frame_after_direct_calls_still_ends_the_connection() -> None:
    node, seen = server_node()
    async with node.serve(standalone=True, listen="tcp://127.0.0.1:0"), raw_peer(node) as peer:
        first = peer.call("echo", [1])
        assert msgpack.unpackb(await peer.frame(), raw=False) == [KIND_REPLY, first, 1]
        bad_utf8 = b"\x91\xa2\xff\xfe"
        peer.call("echo", bad_utf8)  # the C side declines it; the codec's check ends the connection
        assert await asyncio.wait_for(peer.reader.read(), 10) == b""
        assert seen == [1]
        # The node serves on.
        async with raw_peer(node) as again:
            call_id = again.call("echo", ["still here"])
            assert msgpack.unpackb(await again.frame(), raw=False) == [KIND_REPLY, call_id, "still here"]


async def test_direct_calls_are_counted_and_sampled_like_the_others(procs: Processes) -> None:
    ns, _ = procs.nameservice()
    node, _ = server_node()
    caller = namewire.Node("Counter")
    async with (
        node.serve(nameservice=ns, listen="tcp://127.0.0.1:0", unix=False, grace=0),
        caller.serve(nameservice=ns, listen=None, grace=0),
    ):
        await wait_for_name(caller, "Direct")
        for i in range(20):
            assert await caller.rpc_call("Direct", "echo", i) == i
        await asyncio.gather(*(caller.rpc_call("Direct", "echo", i) for i in range(20)))
        assert direct_calls(node) == 40
        stats = node.metrics.served_stats("Counter", "echo")
        assert stats.calls == 40
        assert stats.timed == 5  # the first, then every eighth
        counters = node.stats()["counters"]
        assert counters["bytes_received"] > 40 * 10 and counters["bytes_sent"] > 40 * 5


async def test_the_node_still_decides_when_its_rules_need_it() -> None:
    node, seen = server_node()
    async with node.serve(standalone=True, listen="tcp://127.0.0.1:0"), raw_peer(node) as peer:
        node._holding_changed("the registry gave our name to another")
        call_id = peer.call("echo", [1])
        reply = msgpack.unpackb(await peer.frame(), raw=False)
        assert reply[1] == call_id and reply[3] == "NameNotFound" and seen == []
        node._holding_changed(None)
        call_id = peer.call("echo", [2])
        assert msgpack.unpackb(await peer.frame(), raw=False) == [KIND_REPLY, call_id, 2]
        assert direct_calls(node) == 1


async def test_a_function_added_while_serving_is_answered_directly() -> None:
    node, _ = server_node()
    async with node.serve(standalone=True, listen="tcp://127.0.0.1:0"), raw_peer(node) as peer:
        node.function(lambda: "new", name="added")
        call_id = peer.call("added", [])
        assert msgpack.unpackb(await peer.frame(), raw=False) == [KIND_REPLY, call_id, "new"]
        assert direct_calls(node) == 1


def test_the_c_side_knows_the_envelope_kinds() -> None:
    from namewire.transport import _native

    assert (_native.WIRE_KIND_CALL, _native.WIRE_KIND_REPLY) == (KIND_CALL, KIND_REPLY)


def direct_replies(node: namewire.Node) -> int:
    """Replies to the node's own calls its connections matched themselves."""
    total = 0
    for session in node._routes.sessions:
        session.connection  # noqa: B018 -- folds the stream's counts in
        total += session.direct_replies
    return total


async def test_a_caller_gets_the_same_results_when_replies_are_matched_in_c(
    procs: Processes,
) -> None:
    ns, _ = procs.nameservice()
    node, _ = server_node()
    caller = namewire.Node("Matcher")
    async with (
        node.serve(nameservice=ns, listen="tcp://127.0.0.1:0", unix=False, grace=0),
        caller.serve(nameservice=ns, listen=None, grace=0),
    ):
        await wait_for_name(caller, "Direct")
        # Every value at once: replies arrive many to a read, some the C decoder leaves to Python.
        results = await asyncio.gather(*(caller.rpc_call("Direct", "echo", v) for v in VALUES))
        for value, result in zip(VALUES, results, strict=True):
            assert result == msgpack.unpackb(msgpack.packb(value), raw=False,
                                             strict_map_key=False)
        assert len(VALUES) - 1 <= direct_replies(caller) <= len(VALUES)  # 40 deep: Python's
        # An error envelope is not a reply: it still fails the call, in Python.
        with pytest.raises(namewire.RemoteError, match="ValueError"):
            await caller.rpc_call("Direct", "boom", "no")
        assert caller.metrics.made_stats("Direct", "echo").calls == len(VALUES)
        (session,) = [s for s in caller._routes.sessions if s.peer_name == "Direct"]
        assert session.connection.pending_calls == {}


async def test_a_late_reply_to_a_timed_out_call_is_dropped(
    procs: Processes, caplog: pytest.LogCaptureFixture
) -> None:
    ns, _ = procs.nameservice()
    node = namewire.Node("Slow")
    release = asyncio.Event()

    @node.function
    async def slow() -> str:
        await release.wait()
        return "late"

    @node.function
    def quick(x: int) -> int:
        return x + 1

    caller = namewire.Node("Impatient")
    async with (
        node.serve(nameservice=ns, listen="tcp://127.0.0.1:0", unix=False, grace=0),
        caller.serve(nameservice=ns, listen=None, grace=0),
    ):
        await wait_for_name(caller, "Slow")
        with pytest.raises(namewire.CallTimeout):
            await caller.rpc_call("Slow", "slow", timeout=0.1)
        # The timeout cancels the remote call; a reply already on its way must not be taken for
        # another call's, nor fail the connection.
        release.set()
        assert [await caller.rpc_call("Slow", "quick", i) for i in range(50)] == list(range(1, 51))
        (session,) = [s for s in caller._routes.sessions if s.peer_name == "Slow"]
        assert session.connection.pending_calls == {} and session.connection.is_open
        assert direct_replies(caller) >= 50


async def test_calls_in_flight_fail_when_the_callee_vanishes(procs: Processes) -> None:
    ns, _ = procs.nameservice()
    node = namewire.Node("Doomed")
    never = asyncio.Event()

    @node.function
    async def hang() -> None:
        await never.wait()

    caller = namewire.Node("Left")
    async with caller.serve(nameservice=ns, listen=None, grace=0):
        async with node.serve(nameservice=ns, listen="tcp://127.0.0.1:0", unix=False, grace=0):
            await wait_for_name(caller, "Doomed")
            calls = [asyncio.ensure_future(caller.rpc_call("Doomed", "hang", timeout=30))
                     for _ in range(20)]
            await asyncio.sleep(0.2)
            (session,) = [s for s in caller._routes.sessions if s.peer_name == "Doomed"]
            assert len(session.connection.pending_calls) == 20
        done = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 10)
        assert all(isinstance(e, namewire.PeerLost) for e in done), done
        assert session.connection.pending_calls == {}

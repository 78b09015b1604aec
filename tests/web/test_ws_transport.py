"""namewire sessions over WebSocket: ws:// and wss:// in the scheme table, one envelope a message."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
from pathlib import Path

import msgpack
import pytest
import websockets
from websockets.asyncio.client import connect as ws_connect

import namewire
from namewire.errors import MessageTooLarge, TransportError
from namewire.transport import Session, connect_session, listen_sessions, parse_address
from namewire.transport._websocket import configure_wss
from tests.conftest import Processes, free_port, wait_port
from tests.node.test_by_name import wait_for_name
from tests.transport.test_schemes import Recorder

pytestmark = pytest.mark.timeout(30)


def test_ws_urls_round_trip_with_their_path() -> None:
    for url in ("ws://127.0.0.1:8080/", "ws://[::1]:7/namewire", "wss://example.org:443/x/y"):
        assert str(parse_address(url)) == url
    assert str(parse_address("ws://h")) == "ws://h:80/"
    assert str(parse_address("wss://h")) == "wss://h:443/"


async def test_a_node_over_ws_answers_rpc_call_by_name(procs: Processes) -> None:
    """The name service and a worker both listen on ws:// only; calls by name go over it."""
    port = free_port()
    ns = f"ws://127.0.0.1:{port}/nameservice"
    proc = procs.start("-m", "namewire", "nameservice", "--listen", ns, "--log-level", "WARNING")
    wait_port(port, proc)
    procs.service("worker.py", "WsWorker", ns, "--listen", "ws://127.0.0.1:0/rpc", "--no-unix")
    me = namewire.Node("ws-tester")
    async with me.serve(nameservice=ns, listen=None):
        registration = await wait_for_name(me, "WsWorker")
        assert len(registration.addresses) == 1
        assert registration.addresses[0].startswith("ws://127.0.0.1:")
        assert registration.addresses[0].endswith("/rpc")
        assert await me.rpc_call("WsWorker", "plus", 20, 22) == 42
        await me.send_msg("WsWorker", "over ws")
        assert await asyncio.wait_for(me.get_msg(), 5) == (
            "WsWorker", {"from": "WsWorker", "echo": "over ws"})
        assert await me.get_remote_func_provider("plus") == ["WsWorker"]
        [(_, origin)] = [p for p in me.peers if p[0] == "WsWorker"]
        assert origin == registration.addresses[0]


async def test_json_sessions_are_text_messages_one_envelope_each() -> None:
    """A client speaking JSON by hand: its hello and call, each one text message, no prefix."""
    server, url = await listen_sessions(
        "ws://127.0.0.1:0/", lambda: Session("Server", Recorder(), codec=None))
    try:
        async with ws_connect(url) as ws:
            await ws.send(json.dumps([0, 1, "by-hand", {}]))
            await ws.send(json.dumps([2, 1, "echo", [1, "two"], {}]))
            hello = await asyncio.wait_for(ws.recv(), 5)
            reply = await asyncio.wait_for(ws.recv(), 5)
        assert isinstance(hello, str) and json.loads(hello)[:3] == [0, 1, "Server"]
        assert isinstance(reply, str) and json.loads(reply) == [3, 1, ["echo", 1, "two"]]
    finally:
        server.close()


async def test_msgpack_sessions_are_binary_and_a_session_pair_works() -> None:
    seen = Recorder()
    server, url = await listen_sessions(
        "ws://127.0.0.1:0/ns", lambda: Session("Server", seen, codec=None))
    try:
        caller = Session("Caller", Recorder())
        await connect_session(url, caller, timeout=5)
        await caller.wait_open()
        assert caller.peer_name == "Server"
        assert await caller.call("f", [1, {"a": b"bytes"}], timeout=5) == ["f", 1, {"a": b"bytes"}]
        await caller.send_msg({"n": 1})
        async with ws_connect(url) as raw:
            await raw.send(msgpack.packb([0, 1, "raw", {}]))
            assert isinstance(await asyncio.wait_for(raw.recv(), 5), bytes)
        caller.close()
        await caller.wait_closed()
        assert seen.messages == [{"n": 1}]
    finally:
        server.close()


async def test_an_oversize_message_ends_only_that_session() -> None:
    server, url = await listen_sessions(
        "ws://127.0.0.1:0/", lambda: Session("Server", Recorder(), codec=None, max_frame=1000))
    try:
        good = Session("Good", Recorder())
        await connect_session(url, good, timeout=5)
        await good.wait_open()
        async with ws_connect(url, max_size=None) as raw:
            await raw.send(msgpack.packb([0, 1, "big", {}]))
            await raw.send(b"\x93" + b"x" * 5000)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(raw.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        assert await good.call("still", [], timeout=5) == ["still"]
        good.close()
    finally:
        server.close()


async def test_a_peer_over_its_limit_is_told_frame_too_large() -> None:
    """The sending side's session learns the frame limit from the hello and refuses to send."""
    server, url = await listen_sessions(
        "ws://127.0.0.1:0/", lambda: Session("Server", Recorder(), codec=None, max_frame=1000))
    try:
        caller = Session("Caller", Recorder())
        await connect_session(url, caller, timeout=5)
        await caller.wait_open()
        with pytest.raises(MessageTooLarge):
            await caller.call("f", ["x" * 5000], timeout=5)
        assert await caller.call("f", [], timeout=5) == ["f"]
        caller.close()
    finally:
        server.close()


async def test_a_wrong_path_is_refused_with_404_naming_the_address() -> None:
    server, url = await listen_sessions(
        "ws://127.0.0.1:0/right", lambda: Session("Server", Recorder(), codec=None))
    try:
        wrong = url.replace("/right", "/wrong")
        with pytest.raises(TransportError, match=r"refused the WebSocket upgrade: HTTP 404") as err:
            await connect_session(wrong, Session("C", Recorder()), timeout=5)
        assert wrong in str(err.value)
    finally:
        server.close()


async def test_coroutine_sockets_refuse_ws_urls() -> None:
    with pytest.raises(ValueError, match="carries namewire sessions"):
        await namewire.transport.connect("ws://127.0.0.1:1/")


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl (Debian package openssl) is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=20,
    )
    return cert, key


async def test_wss_with_a_server_certificate(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    with pytest.raises(TransportError, match="needs a server certificate"):
        await listen_sessions("wss://127.0.0.1:0/", lambda: Session("S", Recorder(), codec=None))
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    configure_wss(server=server_ctx)
    try:
        server, url = await listen_sessions(
            "wss://127.0.0.1:0/", lambda: Session("Secure", Recorder(), codec=None))
        try:
            # The default client context does not trust a self-signed certificate...
            with pytest.raises(TransportError, match="handshake .* failed"):
                await connect_session(url, Session("C", Recorder()), timeout=5)
            # ... one that trusts it connects.
            configure_wss(server=server_ctx, client=ssl.create_default_context(cafile=cert))
            caller = Session("C", Recorder())
            await connect_session(url, caller, timeout=5)
            await caller.wait_open()
            assert caller.peer_name == "Secure"
            assert await caller.call("tls", [1], timeout=5) == ["tls", 1]
            caller.close()
        finally:
            server.close()
    finally:
        configure_wss()


async def test_a_flood_of_messages_arrives_whole_and_in_order_under_flow_control() -> None:
    """More than the mailbox window and the stream's high-water mark: senders wait, none lost."""
    seen = Recorder()
    server, url = await listen_sessions(
        "ws://127.0.0.1:0/", lambda: Session("Server", seen, codec=None, window=(100, 1 << 20)))
    try:
        caller = Session("Caller", Recorder())
        await connect_session(url, caller, timeout=5)
        await caller.wait_open()
        payload = "x" * 2000
        for i in range(5000):
            await caller.send_msg([i, payload])
        assert await caller.call("sync", [], timeout=10) == ["sync"]
        assert [m[0] for m in seen.messages] == list(range(5000))
        caller.close()
    finally:
        server.close()

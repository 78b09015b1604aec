"""The scheme table: URL forms, the one place schemes are compared, fd:// streams, the no-unix switch."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path
from typing import Any

import pytest

from namewire.errors import TransportError
from namewire.transport import (
    SCHEMES,
    Session,
    connect_session,
    parse_address,
    scheme_of,
    session_over,
)
from namewire.wire import Call

pytestmark = pytest.mark.timeout(20)

PACKAGE = Path(__file__).resolve().parents[2] / "namewire"


class Recorder:
    """A SessionHandler that answers every call with its arguments and keeps what it saw."""

    def __init__(self) -> None:
        self.opened: list[str] = []
        self.messages: list[Any] = []
        self.closed: list[BaseException | None] = []

    def session_opened(self, session: Session) -> None:
        self.opened.append(session.peer_name or "")

    def message_received(self, session: Session, payload: Any, size: int) -> None:
        self.messages.append(payload)
        session.message_consumed(size)

    def call_received(self, session: Session, call: Call) -> None:
        session.reply(call.id, [call.func, *call.args])

    def cancel_received(self, session: Session, call_id: int) -> None:
        pass

    def session_closed(self, session: Session, reason: BaseException | None) -> None:
        self.closed.append(reason)


def test_url_forms_round_trip() -> None:
    for url in ("tcp://127.0.0.1:8010", "tcp://[::1]:7", "unix:///tmp/x.sock", "fd://5",
                "udp://10.0.0.1:53"):
        assert str(parse_address(url)) == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://x:1", "unknown scheme 'http'"),
        ("tcp://nohost", "host and port are required"),
        ("unix://", "no socket path"),
        ("fd://three", "a file descriptor number is required"),
    ],
)
def test_bad_urls_say_what_is_accepted(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(why)) as caught:
        parse_address(url)
    forms = "tcp://host:port, tls://host:port, unix:///path/to.sock, fd://N, udp://host:port or "
    assert f"expected {forms}" in str(caught.value)
    assert "ws://host:port/path" in str(caught.value)


def test_the_table_says_what_a_scheme_can_do() -> None:
    assert scheme_of("unix:///x").same_host and not scheme_of("tcp://h:1").same_host
    assert SCHEMES["fd"].bind is None and SCHEMES["fd"].connect is not None
    assert not scheme_of("udp://h:1").stream


def test_no_scheme_is_compared_outside_the_table() -> None:
    """The rule that keeps a new transport one entry: nobody else asks `scheme == ...`."""
    pattern = re.compile(r"""scheme\s*(==|!=|in)\s*[("']|startswith\(["'](tcp|unix|udp|fd)://""")
    offenders = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in PACKAGE.rglob("*.py")
        if path.name != "_schemes.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


async def test_fd_stream_runs_a_session_over_an_inherited_socket() -> None:
    """fd:// adopts an already connected socket: a socketpair end, as a worker process gets."""
    left, right = socket.socketpair()
    server = Recorder()
    client = Recorder()
    accepting = Session("Server", server, codec=None)
    await session_over(left, accepting)
    calling = Session("Client", client)
    await connect_session(f"fd://{right.detach()}", calling, timeout=5)
    await calling.wait_open()
    assert await calling.call("echo", [1, "two"], timeout=5) == ["echo", 1, "two"]
    await calling.send_msg({"hi": 1})
    for _ in range(100):
        if server.messages:
            break
        await asyncio.sleep(0.01)
    assert server.messages == [{"hi": 1}] and server.opened == ["Client"]
    calling.close()
    assert await asyncio.wait_for(accepting.wait_closed(), 5) is None
    await asyncio.wait_for(calling.wait_closed(), 5)


async def test_fd_that_is_not_a_stream_socket_is_refused() -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        with pytest.raises(TransportError, match="is not a stream socket"):
            await connect_session(f"fd://{udp.fileno()}", Session("C", Recorder()), timeout=1)
    finally:
        udp.close()


def test_no_unix_switch_turns_unix_sockets_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """NAMEWIRE_NO_UNIX=1 gives, on Linux, what a platform without AF_UNIX in asyncio gets."""
    monkeypatch.setenv("NAMEWIRE_NO_UNIX", "1")
    with pytest.raises(ValueError, match="unix:// is not available on this platform"):
        parse_address("unix:///tmp/x.sock")


async def test_a_node_without_unix_sockets_listens_on_tcp_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import namewire

    monkeypatch.setenv("NAMEWIRE_NO_UNIX", "1")
    node = namewire.Node("NoUnix")
    async with node.serve(standalone=True):
        assert [scheme_of(a).name for a in node.addresses] == ["tcp"]


async def test_a_connection_reset_as_it_is_made_is_a_connection_reset() -> None:
    """The peer accepted and reset before the session got the socket (a peer killed just then):
    a `ConnectionReset` the caller can act on (rpc_call_any moves on), not a bare OSError."""
    from namewire.errors import ConnectionReset
    from namewire.transport._native_stream import native_sessions

    if not native_sessions():
        pytest.skip("the C reactor is not in use: asyncio adopts the socket without asking")
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    accepted, _ = server.accept()
    accepted.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")  # RST on close
    accepted.close()
    server.close()
    await asyncio.sleep(0.05)
    with pytest.raises(ConnectionReset, match="reset as it was made"):
        await session_over(client, Session("C", Recorder()))
    assert client.fileno() == -1  # closed, not leaked

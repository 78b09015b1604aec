"""`WebSocketStream`: namewire sessions over WebSocket (``ws://host:port/path``, ``wss://``).

One envelope per WebSocket message, no length prefix: the stream cuts and takes frames, so the
session feeds each message to `RpcConnection` as one frame body. The handshake, masking, pings
and close codes of RFC 6455 are python-websockets' (its asyncio implementation); this module only
moves messages between it and the `StreamHandler`, and keeps the asyncio flow-control contract of
`Stream` (``writing_paused`` above the high-water mark).

Binary or text: a body that starts with ``[`` is a JSON envelope (envelopes are arrays, and no
msgpack array starts with that byte) and goes out as a text message, anything else as binary.
Text messages are read as their UTF-8 bytes. So a JSON session is readable in a browser's
developer tools, and a msgpack one costs no encoding.

TLS for ``wss://`` is the standard library's: `configure_wss` sets the server context (required
to listen) and the client context (default: `ssl.create_default_context()`, which verifies the
peer against the system's CAs).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections import deque
from collections.abc import Callable

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.connection import Connection
from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.http11 import Request, Response

from ..errors import FrameTooLarge, TransportError
from ..wire import DEFAULT_MAX_FRAME
from ._address import Address, sockaddr_url
from ._streams import WRITE_HIGH_WATER, Stream, StreamHandler

__all__ = ["WebSocketServer", "WebSocketStream", "configure_wss", "open_websocket",
           "serve_websockets"]

log = logging.getLogger("namewire.transport")

_contexts: dict[str, ssl.SSLContext | None] = {"server": None, "client": None}


def configure_wss(
    *, server: ssl.SSLContext | None = None, client: ssl.SSLContext | None = None
) -> None:
    """Set the TLS contexts of ``wss://``: ``server`` (with its certificate) to listen, ``client``
    to connect (None: the default context, verifying against the system's CAs)."""
    _contexts["server"] = server
    _contexts["client"] = client


class WebSocketStream(Stream):
    """A `Stream` over one python-websockets connection (either side)."""

    cuts_frames = True
    takes_frames = True

    def __init__(self, ws: Connection, scheme: str) -> None:
        self._ws = ws
        self._handler: StreamHandler | None = None
        self._max_frame = DEFAULT_MAX_FRAME
        self._out: deque[bytes] = deque()
        self._out_bytes = 0
        self._out_ready = asyncio.Event()
        self._reading = asyncio.Event()
        self._reading.set()
        self._paused = False
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []
        self._lost = asyncio.get_running_loop().create_future()
        self.local_address = sockaddr_url(scheme, ws.local_address)
        self.peer_address = sockaddr_url(scheme, ws.remote_address)
        self.where = self.peer_address

    def start(self, handler: StreamHandler, *, max_frame: int) -> None:
        self._handler = handler
        self._max_frame = max_frame
        # The parser checks each message against this as it arrives, before buffering it whole.
        self._ws.protocol.max_message_size = max_frame
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._read()), loop.create_task(self._write())]

    async def wait_lost(self) -> None:
        """Until ``stream_lost`` has been reported (a server's handler holds its connection open)."""
        await asyncio.shield(self._lost)

    def write(self, data: bytes) -> None:
        if self._closing:
            return
        self._out.append(data)
        self._out_bytes += len(data)
        self._out_ready.set()
        if not self._paused and self.write_buffer_size() > WRITE_HIGH_WATER:
            self._paused = True
            if self._handler is not None:
                self._handler.writing_paused()

    def write_buffer_size(self) -> int:
        return self._out_bytes + self._ws.transport.get_write_buffer_size()

    def pause_reading(self) -> None:
        self._reading.clear()

    def resume_reading(self) -> None:
        self._reading.set()

    def close(self) -> None:
        self._closing = True
        self._out_ready.set()  # the writer flushes what is queued, then closes

    def abort(self) -> None:
        self._closing = True
        self._out.clear()
        self._ws.transport.abort()

    # -- internals ---------------------------------------------------------------------------------

    async def _read(self) -> None:
        reason: BaseException | None = None
        try:
            while True:
                if not self._reading.is_set():
                    await self._reading.wait()
                message = await self._ws.recv()
                body = message.encode() if isinstance(message, str) else message
                if len(body) > self._max_frame:  # only if the limit changed mid-message
                    raise FrameTooLarge(len(body), self._max_frame, self.where)
                assert self._handler is not None
                self._handler.frames_received([body])
        except ConnectionClosed as exc:
            reason = _closed_reason(exc, self.where, self._max_frame)
        except FrameTooLarge as exc:
            reason = exc
            self._ws.transport.abort()
        except asyncio.CancelledError:
            reason = TransportError(f"stream to {self.where} stopped", self.where)
        finally:
            self._report_lost(reason)

    async def _write(self) -> None:
        ws = self._ws
        try:
            while True:
                await self._out_ready.wait()
                self._out_ready.clear()
                while self._out:
                    body = self._out.popleft()
                    self._out_bytes -= len(body)
                    await ws.send(body, text=body[:1] == b"[")
                    if self._paused and self.write_buffer_size() <= WRITE_HIGH_WATER // 4:
                        self._paused = False
                        if self._handler is not None:
                            self._handler.writing_resumed()
                if self._closing:
                    await ws.close()
                    return
        except ConnectionClosed:
            pass  # the reader reports why

    def _report_lost(self, reason: BaseException | None) -> None:
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        handler, self._handler = self._handler, None
        if not self._lost.done():
            self._lost.set_result(None)
        if handler is not None:
            handler.stream_lost(reason)


def _closed_reason(exc: ConnectionClosed, where: str, max_frame: int) -> BaseException | None:
    """None for a normal close (1000/1001), else an error that says what the close code meant."""
    close = exc.rcvd or exc.sent
    if close is not None and close.code in (1000, 1001):
        return None
    if close is not None and close.code == 1009:
        return FrameTooLarge(max_frame + 1, max_frame, where) if exc.sent else TransportError(
            f"{where} closed the WebSocket: message too big for it ({close.reason})", where)
    if close is None:
        return TransportError(f"WebSocket to {where} lost without a close frame", where)
    return TransportError(
        f"{where} closed the WebSocket with code {close.code} ({close.reason or 'no reason'})",
        where,
    )


async def open_websocket(
    address: Address, sock: socket.socket, timeout: float | None, *, tls: bool
) -> WebSocketStream:
    """Do the WebSocket handshake on the connected socket ``sock`` to ``address``."""
    host = f"[{address.host}]" if ":" in address.host else address.host
    url = f"{'wss' if tls else 'ws'}://{host}:{address.port}{address.path or '/'}"
    context = (_contexts["client"] or ssl.create_default_context()) if tls else None
    try:
        ws: ClientConnection = await ws_connect(
            url, sock=sock, ssl=context, open_timeout=timeout, compression=None,
            max_size=DEFAULT_MAX_FRAME, ping_interval=None,
            server_hostname=address.host if tls else None,
        )
    except InvalidStatus as exc:
        sock.close()
        raise TransportError(
            f"{address} refused the WebSocket upgrade: HTTP {exc.response.status_code}", str(address)
        ) from None
    except (InvalidHandshake, ssl.SSLError, OSError) as exc:
        sock.close()
        raise TransportError(f"WebSocket handshake with {address} failed: {exc}",
                             str(address)) from None
    return WebSocketStream(ws, address.scheme)


class WebSocketServer:
    """The WebSocket servers of one address (one per listening socket), as one server."""

    def __init__(self, servers: list[Server]) -> None:
        self._servers = servers

    @property
    def sockets(self) -> list[socket.socket]:
        return [sock for server in self._servers for sock in server.sockets]

    def close(self) -> None:
        """Stop accepting; accepted connections stay open (their sessions close them)."""
        for server in self._servers:
            server.close(close_connections=False)

    async def wait_closed(self) -> None:
        for server in self._servers:
            await server.wait_closed()


async def serve_websockets(
    address: Address,
    sockets: list[socket.socket],
    accepted: Callable[[WebSocketStream], None],
    *,
    tls: bool,
) -> WebSocketServer:
    """Accept WebSocket sessions at ``address``'s path on the bound ``sockets``."""
    context = _contexts["server"] if tls else None
    if tls and context is None:
        for sock in sockets:
            sock.close()
        raise TransportError(
            f"cannot listen on {address}: wss:// needs a server certificate; call "
            "namewire.transport.configure_wss(server=ssl_context) first", str(address))
    path = address.path or "/"

    def check_path(connection: ServerConnection, request: Request) -> Response | None:
        if request.path.split("?", 1)[0] != path:
            return connection.respond(404, f"no namewire endpoint at {request.path}; try {path}\n")
        return None

    async def handler(ws: ServerConnection) -> None:
        stream = WebSocketStream(ws, address.scheme)
        accepted(stream)
        await stream.wait_lost()

    servers: list[Server] = []
    try:
        for sock in sockets:
            servers.append(await ws_serve(
                handler, sock=sock, ssl=context, process_request=check_path, compression=None,
                max_size=DEFAULT_MAX_FRAME, ping_interval=None, logger=_quiet,
            ))
    except BaseException:
        for server in servers:
            server.close()
        for sock in sockets[len(servers):]:
            sock.close()
        raise
    return WebSocketServer(servers)


# websockets logs every failed handshake (a port scan, a browser's probe) at ERROR with a traceback;
# namewire reports connection problems where a session sees them, so keep its own logger quiet.
_quiet = logging.getLogger("namewire.transport.websockets")
_quiet.setLevel(logging.CRITICAL)


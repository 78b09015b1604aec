"""`WebSocketStream`: namewire sessions over WebSocket (``ws://host:port/path``, ``wss://``).

One envelope per WebSocket message, no length prefix: the stream cuts and takes frames, so the
session feeds each message to `RpcConnection` as one frame body. RFC 6455 itself (the handshake,
masking, fragments, pings, close codes, the size limit checked while parsing) is
python-websockets' sans-I/O `ClientProtocol` / `ServerProtocol`; this module is the asyncio
protocol that feeds it bytes and writes what it has to send, as `AsyncioStream` does for plain
sockets. The messages of one read reach the session as one list, and the frames written in one
loop turn leave in one transport write: no task per connection, no await per message.

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
import socket
import ssl
from collections.abc import Callable
from typing import cast

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidHandshake, InvalidStatus, PayloadTooBig
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Protocol, State
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from ..errors import FrameTooLarge, ProtocolError, TransportError
from ..wire import DEFAULT_MAX_FRAME
from ._address import Address, sockaddr_url
from ._endpoints import ServerGroup
from ._streams import WRITE_HIGH_WATER, Stream, StreamHandler, TransportStream

__all__ = ["WebSocketStream", "configure_wss", "open_websocket", "serve_websockets"]

# Frames queued past this many bytes are written at once, not at the end of the loop turn.
_FLUSH_BYTES = 64 * 1024
# A server gives a client this long to send its upgrade request.
HANDSHAKE_TIMEOUT = 10.0

_contexts: dict[str, ssl.SSLContext | None] = {"server": None, "client": None}


def configure_wss(
    *, server: ssl.SSLContext | None = None, client: ssl.SSLContext | None = None
) -> None:
    """Set the TLS contexts of ``wss://``: ``server`` (with its certificate) to listen, ``client``
    to connect (None: the default context, verifying against the system's CAs)."""
    _contexts["server"] = server
    _contexts["client"] = client


class WebSocketStream(TransportStream):
    """A `Stream` over one WebSocket connection; it is the asyncio transport's protocol.

    ``opened`` resolves once the opening handshake is done (or fails with `TransportError`);
    ``path`` is where a server accepts upgrades (others are answered 404).
    """

    cuts_frames = True
    takes_frames = True

    def __init__(self, ws: Protocol, scheme: str, *, path: str = "/",
                 request: Request | None = None) -> None:
        self._ws = ws
        self._scheme = scheme
        self._path = path
        self._request = request  # the client's upgrade request, sent once connected
        self._transport: asyncio.Transport | None = None
        self._handler: StreamHandler | None = None
        self._max_frame = DEFAULT_MAX_FRAME
        self._fragments: list[bytes] | None = None
        self._flush_scheduled = False
        self._unwritten = 0
        self._reason: BaseException | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = self._loop.create_future()
        self.on_open: Callable[[WebSocketStream], None] | None = None

    # -- asyncio protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        self.local_address = sockaddr_url(self._scheme, transport.get_extra_info("sockname"))
        self.peer_address = sockaddr_url(self._scheme, transport.get_extra_info("peername"))
        self.where = self.peer_address
        if self._request is not None:
            assert isinstance(self._ws, ClientProtocol)
            self._ws.send_request(self._request)
            self._flush()
        else:
            self._timer = self._loop.call_later(HANDSHAKE_TIMEOUT, transport.abort)

    def data_received(self, data: bytes) -> None:
        ws = self._ws
        ws.receive_data(data)
        bodies: list[bytes] = []
        for event in ws.events_received():
            if isinstance(event, Frame):
                self._frame(event, bodies)
            elif isinstance(event, Request):
                self._upgrade_requested(event)
            else:
                self._upgrade_answered(event)
        if ws.parser_exc is not None and self._reason is None:
            self._reason = self._parse_error(ws.parser_exc)
        if bodies and self._handler is not None:
            self._handler.frames_received(bodies)
        self._flush()
        if ws.close_expected() and self._transport is not None:
            self._transport.close()

    def eof_received(self) -> bool | None:
        self._ws.receive_eof()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if not self.opened.done():
            self.opened.set_exception(TransportError(
                f"WebSocket handshake with {self.where} failed: "
                f"{self._ws.handshake_exc or exc or 'connection closed'}", self.where or None))
            self.opened.exception()  # retrieved: a server has nobody waiting on it
        handler, self._handler = self._handler, None
        if handler is not None:
            handler.stream_lost(self._reason or self._close_reason(exc))

    # -- Stream ---------------------------------------------------------------------------------

    def start(self, handler: StreamHandler, *, max_frame: int) -> None:
        self._handler = handler
        self._max_frame = max_frame
        self._ws.max_message_size = max_frame  # checked by the parser as each frame arrives

    def write(self, data: bytes) -> None:
        if self._ws.state is not State.OPEN:
            return
        if data[:1] == b"[":
            self._ws.send_text(data)
        else:
            self._ws.send_binary(data)
        self._unwritten += len(data)
        if self._unwritten > _FLUSH_BYTES:
            self._flush()  # a sender that does not yield still reaches the transport's flow control
        elif not self._flush_scheduled:
            # The session writes all of a loop turn's frames before this runs: one write for all.
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() if self._transport is not None else 0

    def pause_reading(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def close(self) -> None:
        if self._ws.state is State.OPEN:
            self._ws.send_close(1000)
        self._flush()
        if self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # -- internals ---------------------------------------------------------------------------------

    def _frame(self, frame: Frame, bodies: list[bytes]) -> None:
        opcode = frame.opcode
        data = frame.data
        if type(data) is not bytes:  # the parser gives bytes; the type allows any buffer
            data = bytes(data)
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                bodies.append(data)
            else:
                self._fragments = [data]
        elif opcode is Opcode.CONT and self._fragments is not None:
            self._fragments.append(data)
            if frame.fin:
                bodies.append(b"".join(self._fragments))
                self._fragments = None
        # ping, pong and close are the protocol's: it queues the answers we flush

    def _upgrade_requested(self, request: Request) -> None:
        ws = self._ws
        assert isinstance(ws, ServerProtocol)
        if request.path.split("?", 1)[0] != self._path:
            response = ws.reject(404, f"no namewire endpoint at {request.path}; try {self._path}\n")
        else:
            response = ws.accept(request)
        ws.send_response(response)
        self._flush()
        self._opened_or_not()

    def _upgrade_answered(self, response: Response) -> None:
        self._opened_or_not()

    def _opened_or_not(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        ws = self._ws
        if ws.state is State.OPEN:
            if not self.opened.done():
                self.opened.set_result(None)
            if self.on_open is not None:
                on_open, self.on_open = self.on_open, None
                on_open(self)
        elif self._transport is not None:
            self._transport.close()

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._unwritten = 0
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        data = self._ws.data_to_send()
        if not data:
            return
        if data[-1] == b"":  # the protocol's end-of-stream marker: the connection is done
            data.pop()
            transport.write(b"".join(data))
            transport.close()
            return
        transport.write(data[0] if len(data) == 1 else b"".join(data))

    def _parse_error(self, exc: Exception) -> BaseException:
        if isinstance(exc, PayloadTooBig):
            size = getattr(exc, "size", None) or self._max_frame + 1
            return FrameTooLarge(size, self._max_frame, self.where)
        return ProtocolError(f"bad WebSocket data from {self.where}: {exc}", origin=self.where)

    def _close_reason(self, exc: Exception | None) -> BaseException | None:
        """None for a normal close (1000/1001), else an error saying what the close code meant."""
        code, reason = self._ws.close_code, self._ws.close_reason
        if code in (1000, 1001):
            return None
        if exc is not None:
            return exc
        if code is None or code == 1006:
            return TransportError(f"WebSocket to {self.where} lost without a close frame",
                                  self.where)
        return TransportError(
            f"{self.where} closed the WebSocket with code {code} ({reason or 'no reason'})",
            self.where)


def _tls_context(tls: bool, server: bool) -> ssl.SSLContext | None:
    if not tls:
        return None
    if server:
        return _contexts["server"]
    return _contexts["client"] or ssl.create_default_context()


async def open_websocket(
    address: Address, sock: socket.socket, timeout: float | None, *, tls: bool
) -> WebSocketStream:
    """Do the WebSocket handshake to ``address`` on the connected socket ``sock``."""
    host = f"[{address.host}]" if ":" in address.host else address.host
    url = f"{'wss' if tls else 'ws'}://{host}:{address.port}{address.path or '/'}"
    client = ClientProtocol(parse_uri(url), max_size=DEFAULT_MAX_FRAME)
    stream = WebSocketStream(client, address.scheme, request=client.connect())
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            await loop.create_connection(
                lambda: stream, sock=sock, ssl=_tls_context(tls, server=False),
                server_hostname=address.host if tls else None,
            )
            await stream.opened
    except TimeoutError:
        stream.abort()
        sock.close()
        raise TransportError(f"WebSocket handshake with {address} timed out after {timeout}s",
                             str(address)) from None
    except (OSError, ssl.SSLError) as exc:
        sock.close()
        if isinstance(exc, TransportError):
            if isinstance(client.handshake_exc, InvalidStatus):
                status = client.handshake_exc.response.status_code
                raise TransportError(f"{address} refused the WebSocket upgrade: HTTP {status}",
                                     str(address)) from None
            raise
        raise TransportError(f"WebSocket handshake with {address} failed: {exc}",
                             str(address)) from None
    except InvalidHandshake as exc:  # pragma: no cover - reported through connection_lost
        stream.abort()
        raise TransportError(f"WebSocket handshake with {address} failed: {exc}",
                             str(address)) from None
    return stream


async def serve_websockets(
    address: Address,
    sockets: list[socket.socket],
    accepted: Callable[[Stream], None],
    *,
    tls: bool,
) -> ServerGroup:
    """Accept WebSocket sessions at ``address``'s path on the bound ``sockets``; each opened
    stream goes to ``accepted``."""
    context = _tls_context(tls, server=True)
    if tls and context is None:
        for sock in sockets:
            sock.close()
        raise TransportError(
            f"cannot listen on {address}: wss:// needs a server certificate; call "
            "namewire.transport.configure_wss(server=ssl_context) first", str(address))
    path = address.path or "/"

    def protocol() -> WebSocketStream:
        stream = WebSocketStream(ServerProtocol(max_size=DEFAULT_MAX_FRAME), address.scheme,
                                 path=path)
        stream.on_open = accepted
        return stream

    loop = asyncio.get_running_loop()
    servers: list[asyncio.Server] = []
    try:
        for sock in sockets:
            servers.append(await loop.create_server(protocol, sock=sock, ssl=context))
    except BaseException:
        for server in servers:
            server.close()
        for sock in sockets[len(servers):]:
            sock.close()
        raise
    return ServerGroup(servers)

"""`Gateway`: browsers reach services by name over WebSocket, through one namewire node.

The gateway is a `Node` (named ``gateway`` unless told otherwise) plus a WebSocket server for
browsers speaking JSON (`BrowserSession`). A browser's calls, messages and provider look-ups are
made by that node, after the `Policy` allowed them. Each browser connection gets a name,
``<gateway>/<n>``, registered as a name the gateway carries (`Registration.via`) while the
browser is connected: any node's ``send_msg("gateway/7", msg)`` reaches the gateway as
``{"to": "gateway/7", "msg": msg}`` from the sender, and the gateway hands it to the browser.
`send_to_browser` (a call to the gateway's ``deliver`` function) does the same and says whether
the browser was still there.

Before the upgrade the gateway checks, in order: the path (404), the Origin (403), the token
(401, from ``?token=`` since browsers cannot set headers on a WebSocket, or ``Authorization:
Bearer``). A plain GET of the WebSocket path runs the same checks and answers 426 when they pass:
the JS client asks it why an upgrade failed, because a browser does not show the status of a
refused upgrade to scripts. ``/namewire.js`` serves the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http
import importlib.resources
import itertools
import json
import logging
import ssl
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ..errors import NameNotFound, NameTaken, NamewireError
from ..node import Caller, Node
from ..registry import Registration
from ..transport import parse_address, scheme_of
from ..transport._schemes import bind_sockets
from ._browser import BrowserSession
from ._policy import Policy

__all__ = ["Gateway", "send_to_browser"]

log = logging.getLogger("namewire.gateway")

CLIENT_PATH = "/namewire.js"
_NAME_TRIES = 64


def client_source() -> bytes:
    """The JS client module (namewire/gateway/static/namewire.js, shipped as package data)."""
    return (importlib.resources.files(__package__) / "static" / "namewire.js").read_bytes()


async def send_to_browser(node: Node, browser: str, msg: Any) -> None:
    """Send ``msg`` to the browser session named ``browser`` (``<gateway>/<n>``), through its
    gateway. Raises `RemoteError` (type NameNotFound) if that browser is no longer connected."""
    gateway, _, _ = browser.rpartition("/")
    if not gateway:
        raise ValueError(f"{browser!r} is not a browser session name (<gateway>/<n>)")
    await node.rpc_call(gateway, "deliver", browser, msg)


class Gateway:
    """Bridges browsers to services by name; see the module docstring.

    ``policy`` says what browsers may reach (nothing, by default); ``call_timeout`` bounds each
    browser call; ``ssl`` (a server context) makes the browser side TLS (``wss://``).
    """

    def __init__(
        self,
        name: str = "gateway",
        *,
        policy: Policy | None = None,
        call_timeout: float = 10.0,
        ssl: ssl.SSLContext | None = None,
        node: Node | None = None,
    ) -> None:
        self.node = node if node is not None else Node(name)
        self.policy = policy if policy is not None else Policy()
        self.call_timeout = call_timeout
        self._ssl = ssl
        self._numbers = itertools.count(1)
        self.browsers: dict[str, BrowserSession] = {}
        self._servers: list[Server] = []
        self._forwarder: asyncio.Task[None] | None = None
        self._path = "/"
        self.url = ""
        self.node.function(name="deliver", with_caller=True)(self._deliver)
        self.node.function(name="browsers")(self._browser_names)

    @property
    def name(self) -> str:
        return self.node.name

    @contextlib.asynccontextmanager
    async def serve(self, url: str, **node_options: Any) -> AsyncIterator[Gateway]:
        """Run for the block: browsers on ``url`` (``ws://host:port/path``); ``node_options``
        go to `Node.start` (``nameservice=``, ``listen=`` for the node's own sessions...)."""
        await self.start(url, **node_options)
        try:
            yield self
        finally:
            await self.stop()

    async def start(self, url: str, **node_options: Any) -> None:
        """Start the node, then accept browsers on ``url``; `stop` undoes both."""
        address = parse_address(url)
        if scheme_of(address).serve_streams is None:
            raise ValueError(f"a gateway listens on ws:// or wss://, not {url!r}")
        if not self.policy.exposed:
            log.warning("%s: nothing is exposed to browsers (give --expose NAME[:FUNC,...])",
                        self.name)
        self._path = address.path or "/"
        await self.node.start(**node_options)
        try:
            sockets = await bind_sockets(address, 1024)
            for sock in sockets:
                self._servers.append(await ws_serve(
                    self._browser_connected, sock=sock, ssl=self._ssl,
                    process_request=self._check_request,
                    # over max_message is answered too_large; this far over, the socket is cut
                    max_size=4 * self.policy.limits.max_message,
                    ping_interval=20, close_timeout=2,
                    logger=logging.getLogger("namewire.gateway.websockets"),
                ))
        except BaseException:
            await self.stop()
            raise
        host, port = sockets[0].getsockname()[:2]
        self.url = str(dataclasses.replace(address, host=host, port=port, path=self._path))
        self._forwarder = asyncio.get_running_loop().create_task(self._forward_messages())
        log.info("%s: browsers on %s (client at %s)", self.name, self.url, CLIENT_PATH)

    async def stop(self) -> None:
        if self._forwarder is not None:
            self._forwarder.cancel()
            self._forwarder = None
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers = []
        await self.node.stop()

    # -- the handshake -------------------------------------------------------------------------------

    async def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if parts.path in (CLIENT_PATH, self._path.rstrip("/") + CLIENT_PATH):
            return _response(200, client_source(), "text/javascript; charset=utf-8")
        if parts.path != self._path:
            return _refusal(404, "not_found", f"nothing at {parts.path}; browsers connect to "
                            f"{self._path} and load {CLIENT_PATH}")
        origin = request.headers.get("Origin")
        if not self.policy.origin_allowed(origin, request.headers.get("Host")):
            log.warning("%s: refused a browser from origin %r (%s)", self.name, origin,
                        connection.remote_address[0])
            return _refusal(403, "origin_not_allowed", f"origin {origin!r} is not allowed")
        token = parse_qs(parts.query).get("token", [None])[0]
        bearer = request.headers.get("Authorization", "")
        if token is None and bearer.startswith("Bearer "):
            token = bearer[len("Bearer "):]
        if not await self.policy.token_accepted(token, origin):
            log.warning("%s: refused a token from %s (origin %r)", self.name,
                        connection.remote_address[0], origin)
            return _refusal(401, "unauthorized", "token refused" if token else "a token is needed")
        if "upgrade" not in request.headers.get("Connection", "").lower():
            return _refusal(426, "upgrade_required", "checks passed; connect with a WebSocket")
        return None

    async def _browser_connected(self, ws: ServerConnection) -> None:
        name = await self._name_browser()
        session = BrowserSession(self, ws, name)
        self.browsers[name] = session
        log.info("%s: browser %s connected from %s", self.name, name, ws.remote_address[0])
        try:
            await session.run()
        finally:
            del self.browsers[name]
            log.info("%s: browser %s left", self.name, name)
            registry = self.node.registry
            if registry is not None:
                await registry.deregister_carried(name)  # senders get NameNotFound from now on

    async def _name_browser(self) -> str:
        """The next free ``<gateway>/<n>``, registered as carried by us when we have a registry.

        A number still held (by our previous run's lease, on etcd) is skipped. When the
        registry cannot take the name, the browser still connects: services then reach it only
        with `send_to_browser`, and the log says so.
        """
        registry = self.node.registry
        for _ in range(_NAME_TRIES):
            name = f"{self.name}/{next(self._numbers)}"
            if registry is None:
                return name
            try:
                await registry.register_carried(Registration(name=name, via=self.name))
            except NameTaken:
                continue
            except (NamewireError, ValueError) as exc:
                log.warning("%s: browser %s is not registered (%s); services reach it only "
                            "with send_to_browser", self.name, name, exc)
            return name
        log.warning("%s: %d browser names in a row are taken; %s is not registered", self.name,
                    _NAME_TRIES, name)
        return name

    # -- messages to browsers ------------------------------------------------------------------------

    def _browser_names(self) -> list[str]:
        return sorted(self.browsers)

    async def _deliver(self, caller: Caller, to: str, msg: Any) -> bool:
        session = self.browsers.get(to)
        if session is None:
            raise NameNotFound(to, f"no browser session {to!r} on gateway {self.name!r}")
        await session.push({"op": "msg", "from": caller.name, "msg": msg})
        return True

    async def _forward_messages(self) -> None:
        while True:
            sender, msg = await self.node.get_msg()
            to = msg.get("to") if isinstance(msg, dict) else None
            session = self.browsers.get(to) if isinstance(to, str) else None
            if session is None or "msg" not in msg:
                log.warning("%s: dropped a message from %r: not {'to': <a connected browser>, "
                            "'msg': ...} (to=%r; a browser that left is no longer registered, "
                            "but its sender may not have heard yet)", self.name, sender, to)
                continue
            with contextlib.suppress(ConnectionClosed):  # the browser left meanwhile
                await session.push({"op": "msg", "from": sender, "msg": msg["msg"]})


def _response(status: int, body: bytes, content_type: str) -> Response:
    headers = Headers([
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        # the page using the client is usually served from another origin than the gateway
        ("Access-Control-Allow-Origin", "*"),
        ("Cache-Control", "no-cache"),
    ])
    return Response(status, http.HTTPStatus(status).phrase, headers, body)


def _refusal(status: int, code: str, message: str) -> Response:
    body = json.dumps({"code": code, "message": message}).encode()
    return _response(status, body, "application/json")


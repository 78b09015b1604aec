"""`Dashboard`: the live page of a cluster, served over HTTP and updated over WebSocket.

``GET /`` is one HTML page (``dashboard.html``: plain JavaScript and SVG, no build step, nothing
fetched from elsewhere); it opens ``/ws``, where every connected page is sent the `ClusterView`
as JSON once per ``interval``. One refresh serves every page, however many are open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from importlib import resources
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ..node import Node
from ..transport import Address, parse_address
from ._view import ClusterView

__all__ = ["Dashboard"]

log = logging.getLogger("namewire.dashboard")


class Dashboard:
    """Serve the dashboard of the cluster ``node`` belongs to at ``listen`` (``tcp://host:port``)."""

    def __init__(self, node: Node, listen: str, *, interval: float = 1.0) -> None:
        self.address = self.check_address(listen)
        self.interval = interval
        self.view = ClusterView(node)
        self._page = resources.files(__package__).joinpath("dashboard.html").read_bytes()
        self._pages: set[ServerConnection] = set()
        self._latest: str | None = None
        self._server: Server | None = None
        self._ticker: asyncio.Task[None] | None = None

    @staticmethod
    def check_address(listen: str) -> Address:
        """``listen`` parsed; ValueError unless it is a host and port."""
        address = parse_address(listen)
        if not address.host:
            raise ValueError(f"the dashboard needs a tcp://host:port address, not {listen!r}")
        return address

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = next(iter(self._server.sockets)).getsockname()[:2]
        return f"http://{host}:{port}/"

    async def start(self) -> None:
        self._server = await serve(
            self._page_connected, self.address.host, self.address.port,
            process_request=self._http, compression=None,
        )
        self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path == "/ws":
            return None  # the WebSocket upgrade
        if request.path in ("/", "/index.html"):
            headers = Headers([("Content-Type", "text/html; charset=utf-8"),
                               ("Content-Length", str(len(self._page))),
                               ("Cache-Control", "no-store")])
            return Response(200, "OK", headers, self._page)
        return connection.respond(404, f"no {request.path} here: the dashboard is at /\n")

    async def _page_connected(self, connection: ServerConnection) -> None:
        self._pages.add(connection)
        try:
            if self._latest is not None:
                await connection.send(self._latest)
            await connection.wait_closed()
        except ConnectionClosed:
            pass
        finally:
            self._pages.discard(connection)

    async def _tick(self) -> None:
        while True:
            try:
                view: dict[str, Any] = await self.view.refresh()
            except Exception:
                log.exception("dashboard: refreshing the cluster view failed")
            else:
                self._latest = json.dumps(view)
                broadcast(self._pages, self._latest)
            await asyncio.sleep(self.interval)

"""The sockets a node accepts connections on, and the addresses it advertises for them."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..transport import Session, listen_sessions, parse_address, scheme_of
from ..transport._schemes import unix_sockets_supported

if TYPE_CHECKING:
    from ._node import Node

__all__ = ["Listeners", "default_unix_path"]

# sun_path is 108 bytes on Linux, 104 on macOS; stay under both.
_SUN_PATH_MAX = 100


def default_unix_path(name: str) -> str:
    """A per-user, per-process socket path for node ``name``."""
    directory = os.path.join(tempfile.gettempdir(), f"namewire-{os.getuid()}")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    suffix = f"-{os.getpid()}.sock"
    room = max(8, _SUN_PATH_MAX - len(directory) - 1 - len(suffix))
    return os.path.join(directory, safe[:room] + suffix)


class Listeners:
    """Stream servers for a node; each accepted connection becomes a `Session` reporting to it."""

    def __init__(self, servers: list[Any], addresses: tuple[str, ...],
                 files: list[str]) -> None:
        self._servers = servers
        self.addresses = addresses
        self._files = files

    @classmethod
    async def open(cls, node: Node, urls: Sequence[str], *, unix: bool) -> Listeners:
        def factory() -> Session:
            return node.new_session(accepting=True)

        urls = list(urls)
        if unix and unix_sockets_supported() and not any(scheme_of(u).makes_file for u in urls):
            urls.append("unix://" + default_unix_path(node.name))
        servers: list[Any] = []
        addresses: list[str] = []
        files: list[str] = []
        try:
            for url in urls:
                address = parse_address(url)
                server, _ = await listen_sessions(address, factory)
                servers.append(server)
                if scheme_of(address).makes_file:
                    files.append(address.path)
                    addresses.append(str(address))
                else:
                    addresses.append(_advertised(server, address.scheme))
        except BaseException:
            for server in servers:
                server.close()
            raise
        return cls(servers, tuple(addresses), files)

    async def close(self) -> None:
        """Stop accepting; connections already accepted stay open."""
        for server in self._servers:
            server.close()
        # Server.wait_closed also waits for accepted connections; the node closes those itself.

    def remove_files(self) -> None:
        for path in self._files:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def _advertised(server: Any, scheme: str) -> str:
    """The URL peers should use: the bound port, and a reachable host for wildcard binds."""
    host, port = server.sockets[0].getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        try:
            host = socket.gethostbyname(socket.gethostname())
        except OSError:
            host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"

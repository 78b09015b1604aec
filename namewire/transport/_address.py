"""Endpoint addresses as URLs: ``tcp://host:port``, ``unix:///path``, ``fd://N``, ``udp://host:port``,
``ws://host:port/path``.

What each scheme means is in the scheme table (`_schemes.py`); an `Address` is only the parsed URL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["Address", "parse_address", "sockaddr_url"]


@dataclass(frozen=True, slots=True)
class Address:
    """A parsed endpoint: ``host``/``port`` (tcp, udp), ``path`` (unix), ``port`` alone (fd),
    all three (ws, wss)."""

    scheme: str
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if not self.host:
            return f"{self.scheme}://{self.path or self.port}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.path}"


def parse_address(url: str | Address) -> Address:
    """Parse ``url``; raise ValueError saying which forms are accepted."""
    if isinstance(url, Address):
        return url
    from ._schemes import parse_url  # the table imports Address

    return parse_url(url)


def sockaddr_url(scheme: str, sockaddr: object) -> str:
    """The URL of a socket address as the socket module reports it (``getsockname``/``getpeername``).

    ``scheme`` is ``"tcp"``, ``"udp"`` or ``"unix"``. IP addresses are ``(host, port, ...)`` tuples;
    Unix addresses are a path (``str`` or ``bytes``), empty for an unnamed socket, which gives
    ``"unix://"``: the caller decides what to show for a peer that has no name.
    """
    if isinstance(sockaddr, str | bytes):
        path = os.fsdecode(sockaddr)
        # Abstract-namespace names start with a NUL byte; show it as "@" as ss(8) does.
        return f"{scheme}://{'@' + path[1:] if path.startswith(chr(0)) else path}"
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        return str(Address(scheme, host=str(sockaddr[0]), port=int(sockaddr[1])))
    return f"{scheme}://?"

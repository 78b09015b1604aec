"""Endpoint addresses as URLs: ``tcp://host:port``, ``unix:///path``, ``udp://host:port``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["DATAGRAM_SCHEMES", "STREAM_SCHEMES", "Address", "parse_address", "sockaddr_url"]

STREAM_SCHEMES = ("tcp", "unix")
DATAGRAM_SCHEMES = ("udp",)
_FORMS = "tcp://host:port, unix:///path/to.sock or udp://host:port"


@dataclass(frozen=True, slots=True)
class Address:
    """A parsed endpoint. ``host``/``port`` for tcp and udp, ``path`` for unix."""

    scheme: str
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def is_stream(self) -> bool:
        return self.scheme in STREAM_SCHEMES


def parse_address(url: str | Address) -> Address:
    """Parse ``url``; raise ValueError saying which forms are accepted."""
    if isinstance(url, Address):
        return url
    try:
        parts = urlsplit(url)
        scheme = parts.scheme
        if scheme == "unix":
            path = parts.netloc + parts.path
            if not path:
                raise ValueError("no socket path")
            return Address("unix", path=path)
        if scheme in ("tcp", "udp"):
            if parts.hostname is None or parts.port is None:
                raise ValueError("host and port are required")
            return Address(scheme, host=parts.hostname, port=parts.port)
    except ValueError as exc:
        raise ValueError(f"bad address {url!r}: {exc}; expected {_FORMS}") from None
    raise ValueError(f"bad address {url!r}: unknown scheme {scheme!r}; expected {_FORMS}")


def sockaddr_url(scheme: str, sockaddr: object) -> str:
    """The URL of a socket address as the socket module reports it (``getsockname``/``getpeername``).

    ``scheme`` is ``"tcp"``, ``"udp"`` or ``"unix"``. IP addresses are ``(host, port, ...)`` tuples;
    Unix addresses are a path (``str`` or ``bytes``), empty for an unnamed socket, which gives
    ``"unix://"``: the caller decides what to show for a peer that has no name.
    """
    if scheme == "unix":
        path = os.fsdecode(sockaddr) if isinstance(sockaddr, str | bytes) else ""
        # Abstract-namespace names start with a NUL byte; show it as "@" as ss(8) does.
        return f"unix://{'@' + path[1:] if path.startswith(chr(0)) else path}"
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        return str(Address(scheme, host=str(sockaddr[0]), port=int(sockaddr[1])))
    return f"{scheme}://?"

"""Opening stream connections and servers from address URLs, with errors that name the address."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import stat
from collections.abc import Callable

from ..errors import ConnectionRefused, ConnectTimeout, TransportError
from ._address import Address, parse_address

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "open_stream", "start_stream_server"]

DEFAULT_CONNECT_TIMEOUT = 10.0

_REFUSED = (errno.ECONNREFUSED, errno.ENOENT, errno.ECONNRESET)


async def open_stream(
    url: str | Address,
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    *,
    timeout: float | None = DEFAULT_CONNECT_TIMEOUT,
) -> tuple[asyncio.BaseTransport, asyncio.BaseProtocol]:
    """Connect to a tcp:// or unix:// address.

    Raises `ConnectionRefused` (nobody listens), `ConnectTimeout` (after ``timeout`` seconds) or
    `TransportError` for other socket failures; each message names the address.
    """
    address = parse_address(url)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            if address.scheme == "tcp":
                return await loop.create_connection(protocol_factory, address.host, address.port)
            if address.scheme == "unix":
                return await loop.create_unix_connection(protocol_factory, address.path)
    except TimeoutError:
        raise ConnectTimeout(
            f"connect to {address} timed out after {timeout}s", str(address)
        ) from None
    except OSError as exc:
        raise _connect_error(exc, address) from None
    raise ValueError(f"{address} is not a stream address (tcp:// or unix://)")


def _connect_error(exc: OSError, address: Address) -> TransportError:
    if isinstance(exc, ConnectionRefusedError) or exc.errno in _REFUSED:
        return ConnectionRefused(f"connection refused by {address}", str(address))
    reason = exc.strerror or str(exc)
    return TransportError(f"cannot connect to {address}: {reason}", str(address))


async def start_stream_server(
    url: str | Address,
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    *,
    backlog: int = 1024,
) -> asyncio.Server:
    """Listen on a tcp:// or unix:// address (port 0 picks a free port).

    A stale unix socket file (nobody accepting) is replaced; a live one is `TransportError`.
    """
    address = parse_address(url)
    loop = asyncio.get_running_loop()
    try:
        if address.scheme == "tcp":
            return await loop.create_server(
                protocol_factory, address.host, address.port, backlog=backlog, reuse_address=True
            )
        if address.scheme == "unix":
            _remove_stale_socket(address)
            return await loop.create_unix_server(protocol_factory, address.path, backlog=backlog)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise TransportError(f"cannot listen on {address}: {reason}", str(address)) from None
    raise ValueError(f"{address} is not a stream address (tcp:// or unix://)")


def _remove_stale_socket(address: Address) -> None:
    try:
        mode = os.stat(address.path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise TransportError(
            f"cannot listen on {address}: path exists and is not a socket", str(address)
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(address.path)
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(address.path)
    else:
        raise TransportError(f"cannot listen on {address}: address in use", str(address))
    finally:
        probe.close()

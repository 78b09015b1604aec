"""The sockets a node accepts connections on, and the addresses it advertises for them.

A wildcard bind (``tcp://0.0.0.0:N``, ``tcp://[::]:N``) is advertised under an address of this host
that other hosts can reach, found without DNS (which blocks the loop and, on Debian, resolves the
host name to 127.0.1.1): the source address the kernel picks for a route out, else the first
non-loopback interface address, else loopback. ``Node.serve(advertise=...)`` overrides all of it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import logging
import os
import re
import socket
import stat
import struct
import sys
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..transport import Address, Session, listen_sessions, parse_address, scheme_of
from ..transport._schemes import unix_sockets_supported

if TYPE_CHECKING:
    from ._node import Node

__all__ = ["Listeners", "default_unix_path", "remove_stale_sockets", "runtime_directory"]

log = logging.getLogger("namewire.node")

# sun_path is 108 bytes on Linux, 104 on macOS; stay under both.
_SUN_PATH_MAX = 100


def runtime_directory() -> str:
    """The per-user directory that holds the nodes' default unix sockets (made if missing)."""
    directory = os.path.join(tempfile.gettempdir(), f"namewire-{os.getuid()}")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    return directory


def remove_stale_sockets(directory: str) -> list[str]:
    """Remove the ``NAME-PID.sock`` files in ``directory`` left by nodes that were killed: their
    process is gone and nobody accepts on them; return their paths.

    Both checks are needed: a connect alone is also refused in the moment between another node's
    bind and its listen, and that node's process is alive.
    """
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            owner = _OWNER.search(entry.name)
            if owner and not _alive(int(owner.group(1))) and _nobody_listens(entry.path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                removed.append(entry.path)
    return removed


_OWNER = re.compile(r"-(\d+)\.sock$")  # the pid in default_unix_path's names


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process: alive
    return True


def _nobody_listens(path: str) -> bool:
    """True for a socket file whose connect is refused. Non-blocking: a listener with a full
    backlog (EAGAIN) is alive, and must not stall the loop."""
    try:
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            return False
    except OSError:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.setblocking(False)
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
    return False


def default_unix_path(name: str) -> str:
    """A per-user, per-process socket path for node ``name``."""
    directory = runtime_directory()
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
            stale = remove_stale_sockets(runtime_directory())
            if stale:
                log.info("%s: removed %d stale unix socket file%s (nobody listened): %s",
                         node.name, len(stale), "" if len(stale) == 1 else "s", ", ".join(stale))
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
                    addresses.append(_advertised(server, address))
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


def _advertised(server: Any, address: Address) -> str:
    """The URL peers should use: the bound port, and a reachable host for wildcard binds."""
    host, port = server.sockets[0].getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = reachable_host(socket.AF_INET6 if host == "::" else socket.AF_INET)
    return str(dataclasses.replace(address, host=host, port=port))


# Where the route probe points. A UDP connect() sends nothing: the kernel only picks the route, and
# with it the source address other hosts would see. Neither address is expected to answer.
_PROBES = {socket.AF_INET: ("10.254.254.254", 9), socket.AF_INET6: ("2001:db8::1", 9)}


def reachable_host(family: socket.AddressFamily) -> str:
    """An address of this host in ``family`` that other hosts can reach, found without DNS.

    The source address of a route out of the host; failing that (no route), the first interface
    address that is neither loopback nor link-local; failing that, loopback (the only one there is).
    """
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(_PROBES[family])
            host = str(probe.getsockname()[0])
        if _usable(host):
            return host
    except OSError:
        pass
    for host in _interface_addresses(family):
        if _usable(host):
            return host
    return "127.0.0.1" if family == socket.AF_INET else "::1"


def _usable(host: str) -> bool:
    address = ipaddress.ip_address(host)
    return not (address.is_loopback or address.is_link_local or address.is_unspecified)


def _interface_addresses(family: socket.AddressFamily) -> list[str]:
    """This host's interface addresses in ``family`` (Linux; elsewhere an empty list)."""
    if sys.platform != "linux":
        return []
    found: list[str] = []
    try:
        if family == socket.AF_INET6:
            with open("/proc/net/if_inet6") as table:  # address, index, prefix, scope, flags, name
                for line in table:
                    digits = line.split()[0]
                    found.append(str(ipaddress.IPv6Address(bytes.fromhex(digits))))
            return found
        import fcntl

        siocgifaddr = 0x8915
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _, name in socket.if_nameindex():
                request = struct.pack("256s", name.encode()[:15])
                try:
                    answer = fcntl.ioctl(sock.fileno(), siocgifaddr, request)
                except OSError:
                    continue  # no IPv4 address on that interface
                found.append(socket.inet_ntoa(answer[20:24]))
    except (OSError, ValueError):
        pass
    return found

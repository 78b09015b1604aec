"""What a node advertises: a reachable host for wildcard binds (without DNS), or ``advertise=``."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import AsyncIterator

import pytest

import namewire
from namewire.nameservice import NameService
from namewire.registry import NameServiceClient

pytestmark = pytest.mark.timeout(30)


@contextlib.asynccontextmanager
async def nameservice() -> AsyncIterator[str]:
    async with NameService().serve("tcp://127.0.0.1:0") as running:
        yield running.address


@pytest.fixture
def no_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Name resolution blocks the loop (and on Debian gives 127.0.1.1 for the host name)."""

    def refuse(*args: object) -> None:
        raise AssertionError(f"blocking name resolution {args!r} inside the event loop")

    monkeypatch.setattr(socket, "gethostbyname", refuse)
    monkeypatch.setattr(socket, "gethostbyname_ex", refuse)


def has_an_address_beyond_loopback(family: socket.AddressFamily) -> bool:
    probe = "10.254.254.254" if family == socket.AF_INET else "2001:db8::1"
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((probe, 9))
            return not ipaddress.ip_address(sock.getsockname()[0]).is_loopback
    except OSError:
        return False


@pytest.mark.parametrize(("listen", "family"), [("tcp://0.0.0.0:0", socket.AF_INET),
                                                ("tcp://[::]:0", socket.AF_INET6)])
async def test_a_wildcard_bind_advertises_a_reachable_address_found_without_dns(
    no_dns: None, listen: str, family: socket.AddressFamily
) -> None:
    if family == socket.AF_INET6 and not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    wild = namewire.Node("Wild", security=namewire.Security(insecure=True))  # no TLS, no secret
    async with wild.serve(listen=listen, unix=False, standalone=True) as node:
        [url] = node.addresses
        host, port = url.removeprefix("tcp://").rsplit(":", 1)
        host = host.strip("[]")
        address = ipaddress.ip_address(host)
        assert not address.is_unspecified and host != "127.0.1.1"
        assert address.version == (4 if family == socket.AF_INET else 6)
        if has_an_address_beyond_loopback(family):
            assert not address.is_loopback, f"{url}: loopback is unreachable from other hosts"
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 2)
        writer.close()
        await writer.wait_closed()


async def test_advertise_is_what_the_name_service_stores_and_peers_use() -> None:
    async with nameservice() as url:
        reader = NameServiceClient(url, node_name="Reader")
        await reader.start()
        try:
            node = namewire.Node("Behind", security=namewire.Security(insecure=True))
            node.function(lambda: "hi", name="hello")
            async with node.serve(nameservice=url, listen="tcp://0.0.0.0:0", unix=True,
                                  advertise="tcp://proxy.example:7001"):
                [unix] = [a for a in node.addresses if a.startswith("unix://")]
                assert node.addresses == ("tcp://proxy.example:7001", unix)
                assert (await reader.lookup("Behind")).addresses == node.addresses
                # A same-host peer still gets in through the unix socket.
                async with namewire.Node("Peer").serve(nameservice=url, listen=None) as peer:
                    assert await peer.rpc_call("Behind", "hello") == "hi"

            many = ["tcp://10.0.0.5:7001", "tcp://[fd00::5]:7001"]
            async with node.serve(nameservice=url, listen="tcp://127.0.0.1:0", unix=False,
                                  advertise=many):
                reader.forget("Behind")
                assert (await reader.lookup("Behind")).addresses == tuple(many)
        finally:
            await reader.close()


async def test_advertise_needs_a_listen_address_and_well_formed_urls() -> None:
    node = namewire.Node("Nowhere")
    with pytest.raises(ValueError, match="give listen= too"):
        await node.start(listen=None, advertise="tcp://h:1", standalone=True)
    with pytest.raises(ValueError, match="bad address 'h:1'"):
        await node.start(advertise="h:1", standalone=True)
    assert node.addresses == ()

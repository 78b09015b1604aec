"""Names no one can spoof: routes, leases, the name service's own name, registrations."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

import namewire
from namewire import Security
from namewire.registry import NameServiceClient, Registration
from namewire.transport import connect_session

from .conftest import Certs, nameservice

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def plus_node(name: str, answer: object = None, **options: object) -> tuple[namewire.Node, list[int]]:
    node = namewire.Node(name, **options)  # type: ignore[arg-type]
    calls: list[int] = []

    @node.function
    def plus(a: int, b: int) -> object:
        calls.append(a + b)
        return a + b if answer is None else answer

    return node, calls


async def say_hello_as(rogue: namewire.Node, url: str) -> None:
    """Connect ``rogue`` to ``url`` and complete the handshake under its (false) name."""
    session = rogue.new_session(origin=url)
    await connect_session(url, session, timeout=2, tls=rogue.security.tls)
    await session.wait_open()


async def test_a_spoofed_hello_does_not_take_the_route() -> None:
    async with nameservice(Security()) as ns:
        real, real_calls = plus_node("PlusServer")
        async with real.serve(nameservice=ns, listen="tcp://127.0.0.1:0", unix=False):
            victim = namewire.Node("Victim")
            async with victim.serve(nameservice=ns, listen="tcp://127.0.0.1:0", unix=False):
                rogue, rogue_calls = plus_node("PlusServer", answer="stolen")
                await rogue.start(listen=None, standalone=True)
                try:
                    await say_hello_as(rogue, victim.addresses[0])
                    await asyncio.sleep(0.05)
                    assert await victim.rpc_call("PlusServer", "plus", 1, 2) == 3
                    assert real_calls == [3] and rogue_calls == []
                    # Messages to the name go to the real owner too.
                    await victim.send_msg("PlusServer", "for the real one")
                    assert await asyncio.wait_for(real.get_msg(), 5) == ("Victim",
                                                                         "for the real one")
                finally:
                    await rogue.stop(grace=0)


async def test_a_caller_that_registers_nothing_still_gets_answers_and_messages() -> None:
    """An unregistered name (a CLI, a sync client) is reachable over the connection it made."""
    async with nameservice(Security()) as ns:
        server = namewire.Node("Server")

        @server.function(with_caller=True)
        async def hello_back(caller: namewire.Caller) -> str:
            await server.send_msg(caller.name, "hello back")
            return "ok"

        async with server.serve(nameservice=ns, listen="tcp://127.0.0.1:0", unix=False):
            client = namewire.Node("Client")
            async with client.serve(nameservice=ns, listen=None):
                assert await client.rpc_call("Server", "hello_back") == "ok"
                assert await asyncio.wait_for(client.get_msg(), 5) == ("Server", "hello back")


async def test_with_mutual_tls_an_inbound_route_is_kept_for_the_lease_holder(certs: Certs) -> None:
    """The lease holder's own connection serves as the route (one connection per pair)."""
    async with nameservice(certs.security("nameservice"), "tls://127.0.0.1:0") as ns:
        server, _ = plus_node("PlusServer", security=certs.security("PlusServer"))
        caller = namewire.Node("Caller", security=certs.security("Caller"))
        caller.function(lambda: "caller here", name="ping")
        async with server.serve(nameservice=ns, listen="tls://127.0.0.1:0", unix=False), \
                caller.serve(nameservice=ns, listen="tls://127.0.0.1:0", unix=False):
            assert await caller.rpc_call("PlusServer", "plus", 1, 1) == 2
            # PlusServer calls back over the connection Caller opened: Caller's certificate
            # names it, and it holds the lease of "Caller".
            assert await server.rpc_call("Caller", "ping") == "caller here"
            assert [p for p, _ in server.peers].count("Caller") == 1


async def rogue_client(ns: str) -> NameServiceClient:
    client = NameServiceClient(ns, node_name="Rogue")
    await client.start()
    return client


async def test_only_the_lease_holder_renews_or_deregisters() -> None:
    async with nameservice(Security()) as ns:
        owner = NameServiceClient(ns, node_name="Owner")
        await owner.start()
        rogue = await rogue_client(ns)
        try:
            await owner.register(Registration("Owner", ("tcp://127.0.0.1:1",)))
            lease = owner._lease
            assert lease is not None
            # Another connection that learned the lease id cannot renew or drop it.
            assert await rogue._call("renew", lease) is False
            with pytest.raises(namewire.RemoteError, match="not yours"):
                await rogue._call("deregister", lease)
            assert (await rogue.lookup("Owner")).addresses == ("tcp://127.0.0.1:1",)
            assert await owner._call("renew", lease) is True
        finally:
            await rogue.close()
            await owner.close()


@pytest.mark.parametrize(
    ("registration", "why"),
    [
        ({"name": "namewire.nameservice"}, "reserved"),
        ({"name": ""}, "not a valid service name"),
        ({"name": "a" * 300}, "not a valid service name"),
        ({"name": "bad name\n"}, "not a valid service name"),
        ({"name": "Blob", "metadata": {"raw": b"\x00\x01"}}, "JSON"),
        ({"name": "Huge", "metadata": {"x": "y" * 100_000}}, "bytes of metadata"),
        ({"name": "Odd", "functions": ["f" * 300]}, "not a valid function name"),
    ],
)
async def test_registrations_are_validated(registration: dict[str, object], why: str) -> None:
    async with nameservice(Security()) as ns:
        rogue = await rogue_client(ns)
        try:
            with pytest.raises(namewire.RemoteError, match=why):
                await rogue._call("register", registration, 5.0)
            assert await rogue.services() == []
        finally:
            await rogue.close()


def test_ls_json_survives_what_others_registered(procs: object) -> None:
    """Bytes in metadata used to crash `namewire ls --json` for everyone while they lived."""
    from tests.conftest import Processes

    assert isinstance(procs, Processes)
    ns, _ = procs.nameservice()

    async def register_then_list() -> None:
        client = NameServiceClient(ns, node_name="Blob")
        await client.start()
        try:
            with pytest.raises(namewire.RemoteError):
                await client.register(Registration("Blob", metadata={"raw": b"\x00"}))
            await client.register(Registration("Fine", metadata={"ok": [1, "two"]}))
            listed = subprocess.run(
                [sys.executable, "-m", "namewire", "ls", "--json", "--nameservice", ns],
                capture_output=True, text=True, timeout=20, cwd=ROOT, check=False,
            )
            assert listed.returncode == 0, listed.stderr
            assert [r["name"] for r in json.loads(listed.stdout)] == ["Fine"]
        finally:
            await client.close()

    asyncio.run(register_then_list())

"""tls:// for nodes, the name service and the coroutine sockets: real certificates, real sockets."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess

import pytest

import namewire
from namewire import AuthError, Security, TlsConfig
from namewire.node import Caller
from namewire.transport import scheme_of
from namewire.wire import PROTOCOL_VERSION, Hello, MsgpackCodec, encode_frame, to_wire

from .conftest import Certs, nameservice


def plus_server(certs: Certs, **options: object) -> namewire.Node:
    node = namewire.Node("PlusServer", security=certs.security("PlusServer", **options))

    @node.function
    def plus(a: int, b: int) -> int:
        return a + b

    @node.function(with_caller=True)
    def who(caller: Caller) -> list[str | None]:
        assert caller.session is not None
        return [caller.name, caller.session.peer_identity]

    return node


async def test_calls_by_name_over_mutual_tls(certs: Certs) -> None:
    async with nameservice(certs.security("nameservice"), "tls://127.0.0.1:0") as ns:
        assert ns.startswith("tls://")
        server = plus_server(certs)
        async with server.serve(nameservice=ns, listen="tls://127.0.0.1:0", unix=False):
            assert [scheme_of(a).name for a in server.addresses] == ["tls"]
            caller = namewire.Node("Caller", security=certs.security("Caller"))
            async with caller.serve(nameservice=ns, listen=None):
                assert await caller.rpc_call("PlusServer", "plus", 1, 2) == 3
                # The server sees who called, by the caller's certificate.
                assert await caller.rpc_call("PlusServer", "who") == ["Caller", "Caller"]
                [(peer, url)] = caller.peers[-1:] if len(caller.peers) == 1 else [
                    p for p in caller.peers if p[0] == "PlusServer"
                ]
                assert peer == "PlusServer" and url.startswith("tls://")


async def test_tls_without_client_certificates(certs: Certs) -> None:
    """A listener with a CA verifies clients unless told not to; a client needs only the CA."""
    server_tls = certs.tls("PlusServer", verify_clients=False)
    async with nameservice(Security(tls=certs.tls("nameservice", verify_clients=False)),
                           "tls://127.0.0.1:0") as ns:
        server = namewire.Node("PlusServer", security=Security(tls=server_tls))
        server.function(lambda a, b: a + b, name="plus")
        async with server.serve(nameservice=ns, listen="tls://127.0.0.1:0", unix=False):
            caller = namewire.Node("Caller", security=Security(tls=TlsConfig(ca=certs.ca)))
            async with caller.serve(nameservice=ns, listen=None):
                assert await caller.rpc_call("PlusServer", "plus", 2, 2) == 4


@pytest.mark.parametrize(
    ("server_cert", "client_ca", "why"),
    [
        ("untrusted", None, "unable to get local issuer certificate"),
        ("PlusServer", "other-ca.pem", "certificate in certificate chain"),
        ("expired", None, "certificate has expired"),
        ("elsewhere", None, "IP address mismatch"),
    ],
)
async def test_a_certificate_that_does_not_check_out_is_refused(
    certs: Certs, server_cert: str, client_ca: str | None, why: str
) -> None:
    tls = TlsConfig(cert=str(certs.dir / f"{server_cert}.pem"),
                    key=str(certs.dir / f"{server_cert}-key.pem"), ca=certs.ca)
    async with nameservice(Security(tls=tls), "tls://127.0.0.1:0") as ns:
        ca = str(certs.dir / client_ca) if client_ca else None
        caller = namewire.Node("Caller", security=Security(tls=certs.tls("Caller", ca=ca)))
        with pytest.raises(AuthError) as refused:
            await caller.start(nameservice=ns, listen=None)
        assert why in str(refused.value)
        assert refused.value.address == ns
        assert not caller._running


async def test_mutual_tls_refuses_a_client_without_a_certificate(certs: Certs) -> None:
    async with nameservice(certs.security("nameservice"), "tls://127.0.0.1:0") as ns:
        anonymous = namewire.Node("Caller", security=Security(tls=TlsConfig(ca=certs.ca)))
        with pytest.raises((AuthError, namewire.RegistryUnavailable)) as refused:
            await anonymous.start(nameservice=ns, listen=None)
        assert "certificate" in str(refused.value)
        # The name service carries on for everyone else.
        caller = namewire.Node("Caller", security=certs.security("Caller"))
        async with caller.serve(nameservice=ns, listen=None):
            assert await caller.get_remote_func_provider("plus") == []


async def test_the_certificate_shows_and_a_plain_client_is_refused(certs: Certs) -> None:
    async with nameservice(certs.security("nameservice", ), "tls://127.0.0.1:0") as ns:
        host, port = ns.removeprefix("tls://").rsplit(":", 1)
        loop = asyncio.get_running_loop()
        # Python's ssl sees the certificate (a client certificate is needed for mutual TLS).
        context = ssl.create_default_context(cafile=certs.ca)
        context.load_cert_chain(str(certs.dir / "Caller.pem"), str(certs.dir / "Caller-key.pem"))

        def peer_certificate() -> dict[str, object]:
            with socket.create_connection((host, int(port)), 5) as raw, \
                    context.wrap_socket(raw, server_hostname=host) as tls:
                return tls.getpeercert()  # type: ignore[return-value]

        cert = await loop.run_in_executor(None, peer_certificate)
        assert ((("commonName", "nameservice"),),) == cert["subject"]
        if shutil.which("openssl"):
            shown = await loop.run_in_executor(None, lambda: subprocess.run(
                ["openssl", "s_client", "-connect", f"{host}:{port}", "-CAfile", certs.ca,
                 "-verify_return_error", "-brief"],
                check=False, input="", capture_output=True, text=True, timeout=10,
            ))
            assert "nameservice" in shown.stdout + shown.stderr

        # A plain TCP client saying a namewire hello gets no hello back: the connection ends.
        def plain_hello() -> bytes:
            hello = MsgpackCodec().encode(to_wire(Hello(PROTOCOL_VERSION, "Plain", {})))
            with socket.create_connection((host, int(port)), 5) as raw:
                raw.settimeout(5)
                raw.sendall(encode_frame(hello))
                received = b""
                while chunk := raw.recv(4096):
                    received += chunk
                return received

        answer = await loop.run_in_executor(None, plain_hello)
        assert b"namewire" not in answer and len(answer) < 100  # at most a TLS alert


async def test_coroutine_sockets_over_tls(certs: Certs) -> None:
    async def echo(sock: namewire.StreamSocket) -> None:
        while (packet := await sock.recv()) is not None:
            await sock.send(packet)

    server_tls = certs.tls("PlusServer")
    async with await namewire.listen("tls://127.0.0.1:0", echo, tls=server_tls) as listener:
        assert listener.address.startswith("tls://")
        sock = await namewire.connect(listener.address, tls=certs.tls("Caller"))
        try:
            await sock.send(b"hi over tls")
            assert await sock.recv() == b"hi over tls"
        finally:
            await sock.close()
        with pytest.raises(AuthError, match="certificate"):
            await namewire.connect(listener.address, tls=TlsConfig(ca=str(certs.dir / "other-ca.pem")))


async def test_listening_on_tls_needs_a_certificate() -> None:
    node = namewire.Node("NoCert", security=Security())
    with pytest.raises(ValueError, match="tls:// needs a certificate and key"):
        await node.start(listen="tls://127.0.0.1:0", standalone=True)

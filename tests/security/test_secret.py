"""The shared secret: challenge-response both ways in the handshake, fed bytes (sans-I/O) and over
real sockets; replayed handshakes and wrong secrets refused; the handshake fuzzed."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import namewire
from namewire import AuthError, Security
from namewire.errors import ProtocolError
from namewire.sync import Client
from namewire.wire import (
    PROTOCOL_VERSION,
    Answered,
    Call,
    Closed,
    Hello,
    MsgpackCodec,
    Opened,
    RpcConnection,
    SecretAuthenticator,
    encode_frame,
    to_wire,
)
from tests.conftest import APPS, Processes, free_port, wait_port

from .conftest import nameservice

SECRET = b"correct horse battery staple 42"
OTHER = b"an entirely different secret!!"


def pair(client_secret: bytes | None = SECRET, server_secret: bytes | None = SECRET,
         ) -> tuple[RpcConnection, RpcConnection]:
    def auth(secret: bytes | None, name: str, accepting: bool) -> SecretAuthenticator | None:
        return SecretAuthenticator(secret, name=name, accepting=accepting) if secret else None

    client = RpcConnection("Client", codec="msgpack", auth=auth(client_secret, "Client", False))
    server = RpcConnection("Server", codec=None, auth=auth(server_secret, "Server", True))
    return client, server


def closed_reason(events: list[Any]) -> BaseException | None:
    [closed] = [e for e in events if isinstance(e, Closed)]
    return closed.reason


def test_both_sides_prove_the_secret_without_sending_it() -> None:
    client, server = pair()
    client.call("plus", [1, 2], "handle", timeout=None)
    first = client.data_to_send()
    wire = bytearray(first)
    # Only the hello leaves before the server has proved itself: the call is held back.
    assert first.count(b"plus") == 0
    server.receive_data(first)
    assert server.events_received() == []  # no Opened before the client's proof
    answer = server.data_to_send()
    wire += answer
    client.receive_data(answer)
    assert [type(e) for e in client.events_received()][0] is Opened
    assert client.peer_identity == "secret"
    proof_and_call = client.data_to_send()
    wire += proof_and_call
    server.receive_data(proof_and_call)
    events = server.events_received()
    assert isinstance(events[0], Opened) and events[0].peer == "Client"
    assert [e.func for e in events if isinstance(e, Call)] == ["plus"]
    assert server.peer_identity == "secret"
    server.reply(1, 3)
    client.receive_data(server.data_to_send())
    assert client.events_received() == [Answered("handle", 3)]
    assert SECRET not in wire and SECRET.hex().encode() not in wire


def test_a_wrong_secret_is_refused_on_both_sides() -> None:
    client, server = pair(client_secret=OTHER)
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    reason = closed_reason(client.events_received())
    assert isinstance(reason, AuthError)
    assert str(reason) == "authentication failed with 'Server': wrong shared secret (the proof " \
                          "does not match)"
    # A client that sends a proof anyway (a forged one) is refused by the server.
    forged = Hello(PROTOCOL_VERSION, "Client", {"auth": {"p": "00" * 32}})
    server.receive_data(encode_frame(MsgpackCodec().encode(to_wire(forged))))
    reason = closed_reason(server.events_received())
    assert isinstance(reason, AuthError) and reason.peer == "Client"
    assert server.peer is None


def test_a_side_without_the_secret_is_refused() -> None:
    client, server = pair(client_secret=None)
    server.set_origin("tcp://127.0.0.1:5555")
    server.receive_data(client.data_to_send())
    reason = closed_reason(server.events_received())
    assert isinstance(reason, AuthError)
    assert reason.address == "tcp://127.0.0.1:5555"
    assert "sent no credentials" in str(reason)
    # Only the refusal leaves (not our challenge), so that the peer knows why and does not retry;
    # it reads as AuthError on the other side.
    parting = server.data_to_send()
    assert b"hmac-sha256" not in parting and b"sent no credentials" in parting
    client.set_origin("tcp://127.0.0.1:8010")
    client.receive_data(parting)
    refused = closed_reason(client.events_received())
    assert isinstance(refused, AuthError)
    assert "refused by the peer: sent no credentials" in str(refused)
    assert refused.address == "tcp://127.0.0.1:8010"

    client, server = pair(server_secret=None)  # a server that cannot prove anything
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    assert isinstance(closed_reason(client.events_received()), AuthError)


def test_a_recorded_handshake_is_useless_when_replayed() -> None:
    client, server = pair()
    hello = client.data_to_send()
    server.receive_data(hello)
    client.receive_data(server.data_to_send())
    client.events_received()
    proof = client.data_to_send()
    server.receive_data(proof)
    assert any(isinstance(e, Opened) for e in server.events_received())

    # The eavesdropper replays the client's bytes to a new connection: the server's nonce is new.
    _, fresh = pair()
    fresh.receive_data(hello)
    fresh.data_to_send()
    fresh.receive_data(proof)
    reason = closed_reason(fresh.events_received())
    assert isinstance(reason, AuthError) and fresh.peer is None

    # ... and replaying the server's answer to a new client fails the same way.
    replayed_client, second_server = pair()
    second_server.receive_data(replayed_client.data_to_send())
    second_server.data_to_send()
    old_client, old_server = pair()
    old_server.receive_data(old_client.data_to_send())
    replayed_client.receive_data(old_server.data_to_send())
    assert isinstance(closed_reason(replayed_client.events_received()), AuthError)


def test_the_handshake_has_a_deadline() -> None:
    now = [100.0]
    server = RpcConnection("Server", codec=None, clock=lambda: now[0], handshake_timeout=2.0,
                           auth=SecretAuthenticator(SECRET, name="Server", accepting=True))
    assert server.next_deadline() == 102.0
    now[0] = 102.0
    server.handle_timeout()
    reason = closed_reason(server.events_received())
    assert isinstance(reason, namewire.HandshakeTimeout) and reason.timeout == 2.0


def test_a_hello_over_the_bound_is_refused_before_it_is_decoded() -> None:
    server = RpcConnection("Server", codec=None, max_hello=1024)
    big = Hello(PROTOCOL_VERSION, "Big", {"junk": "x" * 5000})
    server.receive_data(encode_frame(MsgpackCodec().encode(to_wire(big))))
    reason = closed_reason(server.events_received())
    assert isinstance(reason, ProtocolError)
    assert "exceeds the limit of 1024 bytes" in str(reason)


hello_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=40)
    | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    first=st.one_of(
        st.binary(max_size=200),
        st.builds(lambda name, info: [0, PROTOCOL_VERSION, name, info],
                  st.sampled_from(["Client", ""]),
                  st.one_of(
                      st.dictionaries(st.sampled_from(["auth", "max_frame", "window", "x"]),
                                      hello_values, max_size=4),
                      st.builds(lambda nonce: {"auth": {"m": "hmac-sha256", "n": nonce.hex()}},
                                st.binary(min_size=16, max_size=16)),
                  )),
    ),
    second=st.one_of(
        st.binary(max_size=120),
        hello_values,
        # A well-formed proof of the right size: it must still be the right one.
        st.builds(lambda name, proof: [0, PROTOCOL_VERSION, name, {"auth": {"p": proof.hex()}}],
                  st.sampled_from(["Client", ""]), st.binary(min_size=32, max_size=32)),
    ),
)
def test_the_handshake_fuzzed(first: Any, second: Any) -> None:
    """Whatever a peer without the secret sends, the server never opens and never raises."""
    server = RpcConnection("Server", codec=None,
                           auth=SecretAuthenticator(SECRET, name="Server", accepting=True))
    codec = MsgpackCodec()
    for item in (first, second):
        body = item if isinstance(item, bytes) else codec.encode(item)
        server.receive_data(encode_frame(body))
        server.data_to_send()
    events = server.events_received()
    assert not any(isinstance(e, Opened | Call) for e in events)
    assert server.peer is None


# -- over real sockets ------------------------------------------------------------------------


def plus_server(secret: bytes) -> namewire.Node:
    node = namewire.Node("PlusServer", security=Security(secret=secret))
    node.function(lambda a, b: a + b, name="plus")
    return node


async def test_a_cluster_with_a_secret(caplog: pytest.LogCaptureFixture) -> None:
    async with nameservice(Security(secret=SECRET)) as ns:
        server = plus_server(SECRET)
        async with server.serve(nameservice=ns, listen="tcp://127.0.0.1:0", unix=False):
            caller = namewire.Node("Caller", security=Security(secret=SECRET))
            async with caller.serve(nameservice=ns, listen=None):
                assert await caller.rpc_call("PlusServer", "plus", 1, 2) == 3

                # Wrong secret: refused at once, naming the name service.
                wrong = namewire.Node("Wrong", security=Security(secret=OTHER))
                with pytest.raises(AuthError, match="wrong shared secret") as refused:
                    await wrong.start(nameservice=ns, listen=None)
                assert refused.value.address == ns

                # No secret: the name service refuses and logs it once, with the address; the
                # node is told why at once (no retrying a refusal for the start-up wait).
                caplog.clear()
                with caplog.at_level(logging.WARNING, logger="namewire.transport"):
                    plain = namewire.Node("Plain", security=Security())
                    with pytest.raises(AuthError, match="refused by the peer: sent no credentials"):
                        await plain.start(nameservice=ns, listen=None)
                refusals = [
                    r for r in caplog.records
                    if "sent no credentials" in r.getMessage() and "refused by" not in r.getMessage()
                ]
                assert len(refusals) == 1, [r.getMessage() for r in caplog.records]
                assert "tcp://127.0.0.1:" in refusals[0].getMessage()

                # Nobody else noticed.
                assert await caller.rpc_call("PlusServer", "plus", 2, 3) == 5


def test_the_blocking_client_takes_the_same_security(procs: Processes, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    port = free_port()
    ns = f"tcp://127.0.0.1:{port}"
    proc = procs.start("-m", "namewire", "nameservice", "--listen", ns, "--secret-file",
                       str(secret), "--log-level", "ERROR")
    wait_port(port, proc)
    procs.start("-m", "namewire", "run", str(APPS / "worker.py"), "--name", "Worker",
                "--nameservice", ns, "--log-level", "ERROR", "--secret-file", str(secret))
    with Client(nameservice=ns, security=Security(secret=SECRET)) as client:
        deadline = time.monotonic() + 15
        while "Worker" not in client.get_remote_func_provider("plus"):
            assert time.monotonic() < deadline, "Worker never registered"
            time.sleep(0.1)
        assert client.rpc_call("Worker", "plus", 20, 22) == 42
    with pytest.raises(AuthError, match="wrong shared secret"):
        Client(nameservice=ns, security=Security(secret=OTHER))

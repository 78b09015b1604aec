"""WireConnection: the handshake, codec sniffing, and envelopes after the hello."""

import pytest

from namewire.errors import EncodeError, ProtocolError
from namewire.wire import (
    PROTOCOL_VERSION,
    Call,
    Hello,
    JsonCodec,
    Msg,
    MsgpackCodec,
    Ping,
    Reply,
    WireConnection,
    encode_frame,
    to_wire,
)

ORIGIN = "tcp://127.0.0.1:53412"


def msgpack_frame(*item: object) -> bytes:
    return encode_frame(MsgpackCodec().encode(item))


def json_frame(*item: object) -> bytes:
    return encode_frame(JsonCodec().encode(item))


# Handshake


def test_hello_bytes_msgpack() -> None:
    client = WireConnection("A")
    assert client.codec == "msgpack"
    assert client.hello() == b"\x00\x00\x00\x06\x94\x00\x01\xa1A\x80"


def test_hello_bytes_json() -> None:
    client = WireConnection("A", codec="json")
    assert client.hello() == b'\x00\x00\x00\x0c[0,1,"A",{}]'


def test_hello_carries_info() -> None:
    client = WireConnection("A", codec="json", info={"auth": "s3cret"})
    assert client.hello() == encode_frame(b'[0,1,"A",{"auth":"s3cret"}]')


@pytest.mark.parametrize("codec", ["msgpack", "json"])
def test_handshake_both_ways(codec: str) -> None:
    client = WireConnection("Client", codec=codec, info={"k": 1})
    server = WireConnection("Server", codec=None, origin=ORIGIN)
    assert server.codec is None
    assert server.peer is None

    assert server.receive_data(client.hello()) == [Hello(PROTOCOL_VERSION, "Client", {"k": 1})]
    assert server.codec == codec
    assert server.peer == Hello(PROTOCOL_VERSION, "Client", {"k": 1})

    answer = server.hello()
    assert client.receive_data(answer) == [Hello(PROTOCOL_VERSION, "Server", {})]
    assert client.peer == Hello(PROTOCOL_VERSION, "Server", {})


def test_acceptor_answers_json_in_json() -> None:
    server = WireConnection("Server", codec=None)
    server.receive_data(json_frame(0, 1, "Client", {}))
    assert server.hello() == encode_frame(b'[0,1,"Server",{}]')
    assert server.encode(Reply(3, [1, "x"])) == encode_frame(b'[3,3,[1,"x"]]')


def test_acceptor_answers_msgpack_in_msgpack() -> None:
    server = WireConnection("Server", codec=None)
    server.receive_data(msgpack_frame(0, 1, "Client", {}))
    assert server.hello() == msgpack_frame(0, 1, "Server", {})


def test_acceptor_cannot_speak_first() -> None:
    server = WireConnection("Server", codec=None)
    with pytest.raises(RuntimeError) as raised:
        server.hello()
    assert str(raised.value) == "the codec is not known until the peer's hello has arrived"


def test_unknown_codec_name() -> None:
    with pytest.raises(ValueError) as raised:
        WireConnection("A", codec="xml")
    assert str(raised.value) == "unknown codec 'xml': expected 'msgpack' or 'json'"


def test_hello_one_byte_at_a_time() -> None:
    server = WireConnection("Server", codec=None)
    data = WireConnection("Client", codec="json").hello()
    for byte in data[:-1]:
        assert server.receive_data(bytes([byte])) == []
    assert server.peer is None
    assert server.receive_data(data[-1:]) == [Hello(1, "Client", {})]


def test_empty_read() -> None:
    assert WireConnection("Server", codec=None).receive_data(b"") == []


# After the hello


@pytest.mark.parametrize("codec", ["msgpack", "json"])
def test_pipelined_envelopes_after_hello_in_one_read(codec: str) -> None:
    client = WireConnection("Client", codec=codec)
    server = WireConnection("Server", codec=None)
    data = (
        client.hello()
        + client.encode(Call(1, "plus", [1, 2]))
        + client.encode(Msg({"event": "started"}))
        + client.encode(Ping(5))
    )
    assert server.receive_data(data) == [
        Hello(1, "Client", {}),
        Call(1, "plus", [1, 2]),
        Msg({"event": "started"}),
        Ping(5),
    ]


def test_pipelined_envelopes_split_at_every_offset() -> None:
    client = WireConnection("Client", codec="json")
    data = client.hello() + client.encode(Call(1, "plus", [1, 2])) + client.encode(Ping(5))
    for cut in range(len(data) + 1):
        server = WireConnection("Server", codec=None)
        received = server.receive_data(data[:cut]) + server.receive_data(data[cut:])
        assert received == [Hello(1, "Client", {}), Call(1, "plus", [1, 2]), Ping(5)], cut


def test_envelopes_in_later_reads() -> None:
    client = WireConnection("Client")
    server = WireConnection("Server", codec=None)
    server.receive_data(client.hello())
    assert server.receive_data(client.encode(Call(2, "f", []))) == [Call(2, "f", [])]
    assert server.receive_data(client.encode(Reply(2, b"\x00"))) == [Reply(2, b"\x00")]


def test_json_connection_refuses_bytes() -> None:
    client = WireConnection("Client", codec="json")
    with pytest.raises(EncodeError) as raised:
        client.encode(Msg(b"raw"))
    assert str(raised.value) == (
        "cannot encode with json: Object of type bytes is not JSON serializable"
    )


# Bad handshakes


def test_first_envelope_not_a_hello() -> None:
    server = WireConnection("Server", codec=None, origin=ORIGIN)
    with pytest.raises(ProtocolError) as raised:
        server.receive_data(msgpack_frame(2, 1, "plus", [1, 2]))
    assert str(raised.value) == "expected hello from tcp://127.0.0.1:53412, got call"
    assert server.peer is None


def test_first_envelope_not_a_hello_without_origin() -> None:
    client = WireConnection("Client", codec="json")
    with pytest.raises(ProtocolError) as raised:
        client.receive_data(json_frame(1, "hi"))
    assert str(raised.value) == "expected hello, got msg"


def test_wrong_version_names_both_versions_and_the_peer() -> None:
    server = WireConnection("Server", codec=None, origin=ORIGIN)
    with pytest.raises(ProtocolError) as raised:
        server.receive_data(msgpack_frame(0, 2, "Future", {}))
    assert str(raised.value) == (
        "peer 'Future' from tcp://127.0.0.1:53412 speaks protocol version 2, this side speaks 1"
    )
    assert server.peer is None


def test_wrong_version_without_origin() -> None:
    client = WireConnection("Client", codec="json")
    with pytest.raises(ProtocolError) as raised:
        client.receive_data(json_frame(0, 0, "Old", {}))
    assert str(raised.value) == "peer 'Old' speaks protocol version 0, this side speaks 1"


def test_first_frame_neither_msgpack_nor_json() -> None:
    server = WireConnection("Server", codec=None)
    with pytest.raises(ProtocolError) as raised:
        server.receive_data(encode_frame(b'{"kind":"hello"}'))
    assert str(raised.value) == "first frame is not a hello in msgpack or json (starts with b'{')"
    assert server.codec is None


def test_empty_first_frame() -> None:
    server = WireConnection("Server", codec=None)
    with pytest.raises(ProtocolError) as raised:
        server.receive_data(encode_frame(b""))
    assert str(raised.value) == "first frame is not a hello in msgpack or json (starts with b'')"


def test_msgpack_side_gets_a_json_answer() -> None:
    client = WireConnection("Client", codec="msgpack")
    with pytest.raises(ProtocolError) as raised:
        client.receive_data(json_frame(0, 1, "Server", {}))
    assert str(raised.value) == (
        "undecodable msgpack body of 17 bytes: ExtraData: unpack(b) received extra data."
    )


def test_bad_envelope_after_hello() -> None:
    client = WireConnection("Client")
    server = WireConnection("Server", codec=None)
    with pytest.raises(ProtocolError) as raised:
        server.receive_data(client.hello() + msgpack_frame(2, 1, "plus"))
    assert str(raised.value) == "call envelope needs 3 fields, got 2"


def test_oversize_frame_names_the_origin() -> None:
    server = WireConnection("Server", codec=None, max_frame=100, origin=ORIGIN)
    with pytest.raises(ProtocolError) as raised:
        server.receive_data(b"\x00\x00\x00\x65")
    assert str(raised.value) == (
        "frame of 101 bytes exceeds limit of 100 bytes (from tcp://127.0.0.1:53412)"
    )


def test_oversize_frame_default_limit() -> None:
    server = WireConnection("Server", codec=None, origin=ORIGIN)
    with pytest.raises(ProtocolError) as raised:
        server.receive_data((20000000).to_bytes(4, "big"))
    assert str(raised.value) == (
        "frame of 20000000 bytes exceeds limit of 16777216 bytes (from tcp://127.0.0.1:53412)"
    )


def test_error_is_final() -> None:
    # A connection that has seen bad bytes stays dead: a good hello afterwards is not accepted.
    server = WireConnection("Server", codec=None, origin=ORIGIN)
    with pytest.raises(ProtocolError):
        server.receive_data(msgpack_frame(1, "not a hello"))
    with pytest.raises(ProtocolError) as raised:
        server.receive_data(WireConnection("Client").hello())
    assert str(raised.value) == "expected hello from tcp://127.0.0.1:53412, got msg"
    assert server.peer is None


def test_hello_may_come_again_later() -> None:
    # A second hello is an ordinary envelope to this layer; what it means is for the layers above.
    client = WireConnection("Client")
    server = WireConnection("Server", codec=None)
    assert server.receive_data(client.hello() + client.hello()) == [Hello(1, "Client", {})] * 2


def test_encode_matches_codec() -> None:
    client = WireConnection("Client")
    assert client.encode(Ping(1)) == encode_frame(MsgpackCodec().encode(to_wire(Ping(1))))

"""Property tests: random envelopes round-trip exactly; garbage only ever ends a connection with a
ProtocolError (a `Closed` event), never with another exception escaping ``receive_data``.

Exactness is checked with ``repr``: it tells 1 from True and 1.0, 0.0 from -0.0, str from bytes,
list from tuple, and one envelope kind from another, which ``==`` does not.
"""

from itertools import pairwise
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from namewire.errors import PeerLost, ProtocolError
from namewire.wire import (
    DEFAULT_MAX_FRAME,
    DEFAULT_WINDOW,
    Answered,
    Call,
    Cancel,
    Closed,
    Credit,
    Envelope,
    Error,
    Failed,
    FrameDecoder,
    Hello,
    MessageReceived,
    Msg,
    MsgpackCodec,
    Opened,
    Ping,
    Pong,
    Reply,
    RpcConnection,
    WindowOpened,
    codec_named,
    encode_frame,
    from_wire,
    to_wire,
)

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
GARBAGE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

int64ish = st.integers(min_value=-(2**63), max_value=2**64 - 1)


def values(codec: str) -> st.SearchStrategy[Any]:
    """Values the codec represents exactly."""
    if codec == "msgpack":
        scalars = (
            st.none()
            | st.booleans()
            | int64ish
            | st.floats(allow_nan=False)
            | st.text(max_size=20)
            | st.binary(max_size=20)
        )
        keys: st.SearchStrategy[Any] = st.text(max_size=8) | int64ish
    else:
        scalars = (
            st.none()
            | st.booleans()
            | int64ish
            | st.floats(allow_nan=False, allow_infinity=False)
            | st.text(max_size=20)
        )
        keys = st.text(max_size=8)
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4)
        ),
        max_leaves=12,
    )


def envelopes(codec: str) -> st.SearchStrategy[Envelope]:
    value = values(codec)
    text = st.text(max_size=20)
    info = st.dictionaries(st.text(max_size=8), value, max_size=4)
    return st.one_of(
        st.builds(Hello, int64ish, text, info),
        st.builds(Msg, value),
        st.builds(Call, int64ish, text, st.lists(value, max_size=4), st.none() | metas(codec)),
        st.builds(Reply, int64ish, value),
        st.builds(Error, int64ish, text, text, text, text),
        st.builds(Cancel, int64ish),
        st.builds(Ping, int64ish),
        st.builds(Pong, int64ish),
        st.builds(Credit, int64ish, int64ish),
    )


def metas(codec: str) -> st.SearchStrategy[dict[str, Any]]:
    """Call metadata: the known short keys, and unknown ones (which must pass through)."""
    return st.dictionaries(
        st.sampled_from(["d", "r", "t"]) | st.text(max_size=4), values(codec), max_size=4
    )


def chunked(data: bytes, draw: st.DataObject) -> list[bytes]:
    cuts = sorted(draw.draw(st.lists(st.integers(0, len(data)), max_size=8), label="cuts"))
    bounds = [0, *cuts, len(data)]
    return [data[start:stop] for start, stop in pairwise(bounds)]


# Round trips


@PROPERTY
@given(st.lists(envelopes("msgpack"), max_size=6), st.data())
def test_msgpack_round_trip_with_random_chunking(sent: list[Envelope], draw: st.DataObject) -> None:
    check_round_trip("msgpack", sent, draw)


@PROPERTY
@given(st.lists(envelopes("json"), max_size=6), st.data())
def test_json_round_trip_with_random_chunking(sent: list[Envelope], draw: st.DataObject) -> None:
    check_round_trip("json", sent, draw)


def check_round_trip(codec_name: str, sent: list[Envelope], draw: st.DataObject) -> None:
    codec = codec_named(codec_name)
    data = b"".join(encode_frame(codec.encode(to_wire(envelope))) for envelope in sent)
    decoder = FrameDecoder()
    received = []
    for chunk in chunked(data, draw):
        received += [from_wire(codec.decode(body)) for body in decoder.feed(chunk)]
    assert repr(received) == repr(sent)
    assert decoder.buffered == 0


def calls_and_messages(codec: str) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    """What a client does: ("call", func, args, request id or None) or ("msg", payload)."""
    value = values(codec)
    return st.lists(
        st.tuples(
            st.just("call"),
            st.text(max_size=20),
            st.lists(value, max_size=4),
            st.none() | st.integers(0, 2**63 - 1),
        )
        | st.tuples(st.just("msg"), value),
        max_size=6,
    )


@PROPERTY
@given(
    st.sampled_from(["msgpack", "json"]).flatmap(
        lambda codec: st.tuples(
            st.just(codec),
            st.dictionaries(st.text(max_size=8), values(codec), max_size=3),
            calls_and_messages(codec),
            st.lists(values(codec), min_size=6, max_size=6),
        )
    ),
    st.data(),
)
def test_connection_round_trip_with_random_chunking(
    case: tuple[str, dict[str, Any], list[tuple[Any, ...]], list[Any]], draw: st.DataObject
) -> None:
    codec, info, ops, results = case
    encode = codec_named(codec).encode
    client = RpcConnection("Client", codec=codec, info=info)
    server = RpcConnection("Server", codec=None)
    expected: list[Any] = []
    for op in ops:
        if op[0] == "call":
            _, func, args, request = op
            call_id = client.call(func, args, len(expected), timeout=None, request=request)
            expected.append(Call(call_id, func, args, None if request is None else {"r": request}))
        else:
            # Control messages may go before the peer's hello has given its window.
            assert client.send_msg(op[1], control=True)
            expected.append(MessageReceived(op[1], len(encode((1, op[1])))))
    data = client.data_to_send()
    for chunk in chunked(data, draw):
        server.receive_data(chunk)
    hello_info = {**info, "max_frame": DEFAULT_MAX_FRAME, "window": list(DEFAULT_WINDOW)}
    received = server.events_received()
    assert repr(received) == repr([Opened("Client", hello_info), WindowOpened(), *expected])
    assert server.codec == codec

    # And back: each call answered with a random value, in reverse order.
    calls = [event for event in received if isinstance(event, Call)]
    for event, result in zip(reversed(calls), results, strict=False):
        server.reply(event.id, result)
    answers = []
    for chunk in chunked(server.data_to_send(), draw):
        client.receive_data(chunk)
        answers += client.events_received()
    handles = {
        event.id: position for position, event in enumerate(expected) if isinstance(event, Call)
    }
    assert repr(answers[2:]) == repr(
        [
            Answered(handles[event.id], result)
            for event, result in zip(reversed(calls), results, strict=False)
        ]
    )
    assert client.pending_count == 0


# Garbage


@GARBAGE
@given(st.integers(1, 64), st.lists(st.binary(max_size=200), max_size=10))
def test_frame_decoder_garbage(max_frame: int, chunks: list[bytes]) -> None:
    decoder = FrameDecoder(max_frame)
    for chunk in chunks:
        try:
            bodies = decoder.feed(chunk)
        except ProtocolError:
            # Dead for good: the same error again, whatever comes next.
            try:
                decoder.feed(b"\x00\x00\x00\x00")
            except ProtocolError:
                return
            raise AssertionError("decoder read on after a ProtocolError") from None
        assert all(len(body) <= max_frame for body in bodies)
        assert decoder.buffered <= max_frame + 4


def feed_garbage(connection: RpcConnection, chunks: list[bytes], max_frame: int) -> None:
    """Feed every chunk; the connection either carries on or ends with a Closed(ProtocolError), and
    then reads nothing more. Any exception escaping receive_data fails the test."""
    for chunk in chunks:
        connection.receive_data(chunk)
        events = connection.events_received()
        closed = [event for event in events if isinstance(event, Closed)]
        if closed:
            assert len(closed) == 1 and events[-1] is closed[0], events
            reason = closed[0].reason
            assert isinstance(reason, ProtocolError), reason
            assert connection.ended and connection.end_reason == str(reason)
            # A call still pending fails with PeerLost carrying the reason.
            lost = [
                e.error for e in events if isinstance(e, Failed) and isinstance(e.error, PeerLost)
            ]
            assert all(error.reason == str(reason) for error in lost)
            assert connection.pending_count == 0
            assert connection.data_to_send() == b""
            for rest in chunks:
                connection.receive_data(rest)
            assert connection.events_received() == []
            return
        assert not connection.ended
        # Private, but it is the one number that proves memory stays bounded.
        assert connection._decoder.buffered <= max_frame + 4


@GARBAGE
@given(
    st.sampled_from([None, "msgpack", "json"]),
    st.integers(1, 64),
    st.lists(st.binary(max_size=200), max_size=10),
)
def test_connection_raw_garbage(codec: str | None, max_frame: int, chunks: list[bytes]) -> None:
    connection = RpcConnection("Peer", codec=codec, max_frame=max_frame)
    if codec is not None:
        connection.call("f", [], "pending", timeout=None)  # a connecting side may call at once
    feed_garbage(connection, chunks, max_frame)


# Bodies that start like an array get past the sniffing and the framing, into the codecs.
array_leads = st.sampled_from([b"[", b"\x90", b"\x93", b"\x94", b"\xdc\x00\x04", b""])
json_ish = st.text(alphabet='[]{}",:0123456789.-+eEtrufalsn\\ ', max_size=60).map(str.encode)


@GARBAGE
@given(st.lists(st.tuples(array_leads, st.binary(max_size=60) | json_ish), min_size=1, max_size=5))
def test_connection_framed_garbage(bodies: list[tuple[bytes, bytes]]) -> None:
    data = b"".join(encode_frame(lead + rest) for lead, rest in bodies)
    feed_garbage(RpcConnection("Server", codec=None, max_frame=1024), [data], 1024)


@GARBAGE
@given(
    st.sampled_from(["msgpack", "json"]),
    st.lists(st.binary(max_size=60) | json_ish, min_size=1, max_size=5),
)
def test_garbage_after_a_good_hello(codec: str, bodies: list[bytes]) -> None:
    data = RpcConnection("Client", codec=codec).data_to_send()
    data += b"".join(encode_frame(body) for body in bodies)
    feed_garbage(RpcConnection("Server", codec=None, max_frame=1024), [data], 1024)


@GARBAGE
@given(
    st.sampled_from(["msgpack", "json"]),
    st.lists(st.binary(max_size=60) | json_ish, min_size=1, max_size=5),
)
def test_garbage_to_a_caller_with_pending_calls(codec: str, bodies: list[bytes]) -> None:
    # The answering side's hello, then garbage: the caller's pending calls must all be settled.
    client = RpcConnection("Client", codec=codec, max_frame=1024)
    client.call("f", [], "h1", timeout=None)
    client.call("g", [], "h2", timeout=5)
    server = RpcConnection("Server", codec=None)
    server.receive_data(client.data_to_send())
    data = server.data_to_send() + b"".join(encode_frame(body) for body in bodies)
    feed_garbage(client, [data], 1024)


@GARBAGE
@given(st.lists(st.integers(-2, 9) | values("msgpack"), max_size=7) | values("msgpack"))
def test_well_formed_msgpack_of_the_wrong_shape(item: Any) -> None:
    # Valid msgpack, arbitrary structure: from_wire either builds an envelope or names the fault.
    codec = MsgpackCodec()
    try:
        envelope = from_wire(codec.decode(codec.encode(item)))
    except ProtocolError:
        return
    if type(envelope) is Call and len(item) == 4:
        item = [*item, None]  # a call's metadata is optional on the wire
    assert to_wire(envelope) == tuple(item)

"""Property tests: random envelopes round-trip exactly; garbage only ever raises ProtocolError.

Exactness is checked with ``repr``: it tells 1 from True and 1.0, 0.0 from -0.0, str from bytes,
list from tuple, and one envelope kind from another, which ``==`` does not.
"""

from itertools import pairwise
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from namewire.errors import ProtocolError
from namewire.wire import (
    PROTOCOL_VERSION,
    Call,
    Cancel,
    Envelope,
    Error,
    FrameDecoder,
    Hello,
    Msg,
    MsgpackCodec,
    Ping,
    Pong,
    Reply,
    WireConnection,
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
        st.builds(Call, int64ish, text, st.lists(value, max_size=4)),
        st.builds(Reply, int64ish, value),
        st.builds(Error, int64ish, text, text, text, text),
        st.builds(Cancel, int64ish),
        st.builds(Ping, int64ish),
        st.builds(Pong, int64ish),
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


@PROPERTY
@given(
    st.sampled_from(["msgpack", "json"]).flatmap(
        lambda codec: st.tuples(
            st.just(codec),
            st.dictionaries(st.text(max_size=8), values(codec), max_size=3),
            st.lists(envelopes(codec), max_size=6),
        )
    ),
    st.data(),
)
def test_connection_round_trip_with_random_chunking(
    case: tuple[str, dict[str, Any], list[Envelope]], draw: st.DataObject
) -> None:
    codec, info, sent = case
    client = WireConnection("Client", codec=codec, info=info)
    server = WireConnection("Server", codec=None)
    data = client.hello() + b"".join(client.encode(envelope) for envelope in sent)
    received = []
    for chunk in chunked(data, draw):
        received += server.receive_data(chunk)
    assert repr(received) == repr([Hello(PROTOCOL_VERSION, "Client", info), *sent])
    assert server.codec == codec


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


def feed_garbage(connection: WireConnection, chunks: list[bytes], max_frame: int) -> None:
    """Feed until the first ProtocolError; anything else escaping fails the test."""
    for chunk in chunks:
        try:
            received = connection.receive_data(chunk)
        except ProtocolError:
            return
        assert isinstance(received, list)
        # Private, but it is the one number that proves memory stays bounded.
        assert connection._decoder.buffered <= max_frame + 4


@GARBAGE
@given(
    st.sampled_from([None, "msgpack", "json"]),
    st.integers(1, 64),
    st.lists(st.binary(max_size=200), max_size=10),
)
def test_connection_raw_garbage(codec: str | None, max_frame: int, chunks: list[bytes]) -> None:
    feed_garbage(WireConnection("Server", codec=codec, max_frame=max_frame), chunks, max_frame)


# Bodies that start like an array get past the sniffing and the framing, into the codecs.
array_leads = st.sampled_from([b"[", b"\x90", b"\x93", b"\x94", b"\xdc\x00\x04", b""])
json_ish = st.text(alphabet='[]{}",:0123456789.-+eEtrufalsn\\ ', max_size=60).map(str.encode)


@GARBAGE
@given(st.lists(st.tuples(array_leads, st.binary(max_size=60) | json_ish), min_size=1, max_size=5))
def test_connection_framed_garbage(bodies: list[tuple[bytes, bytes]]) -> None:
    data = b"".join(encode_frame(lead + rest) for lead, rest in bodies)
    feed_garbage(WireConnection("Server", codec=None, max_frame=1024), [data], 1024)


@GARBAGE
@given(
    st.sampled_from(["msgpack", "json"]),
    st.lists(st.binary(max_size=60) | json_ish, min_size=1, max_size=5),
)
def test_garbage_after_a_good_hello(codec: str, bodies: list[bytes]) -> None:
    client = WireConnection("Client", codec=codec)
    data = client.hello() + b"".join(encode_frame(body) for body in bodies)
    feed_garbage(WireConnection("Server", codec=None, max_frame=1024), [data], 1024)


@GARBAGE
@given(st.lists(st.integers(-2, 9) | values("msgpack"), max_size=7) | values("msgpack"))
def test_well_formed_msgpack_of_the_wrong_shape(item: Any) -> None:
    # Valid msgpack, arbitrary structure: from_wire either builds an envelope or names the fault.
    codec = MsgpackCodec()
    try:
        envelope = from_wire(codec.decode(codec.encode(item)))
    except ProtocolError:
        return
    assert to_wire(envelope) == tuple(item)

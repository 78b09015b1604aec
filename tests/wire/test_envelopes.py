"""Envelopes: the array form of each kind, exact round trips, and every way a body can be wrong."""

from typing import Any

import pytest

from namewire.errors import ProtocolError
from namewire.wire import (
    PROTOCOL_VERSION,
    Call,
    Cancel,
    Credit,
    Envelope,
    Error,
    FrameDecoder,
    Hello,
    JsonCodec,
    Msg,
    MsgpackCodec,
    Ping,
    Pong,
    Reply,
    encode_frame,
    from_wire,
    to_wire,
)

EVERY_KIND: list[tuple[Envelope, tuple[Any, ...]]] = [
    (Hello(1, "PlusServer", {"auth": "s3cret"}), (0, 1, "PlusServer", {"auth": "s3cret"})),
    (Msg({"event": "started"}), (1, {"event": "started"})),
    (Call(17, "plus", [1, 2]), (2, 17, "plus", [1, 2], None)),
    (
        Call(17, "plus", [1, 2], {"d": 2001, "r": 7}),
        (2, 17, "plus", [1, 2], {"d": 2001, "r": 7}),
    ),
    (Reply(17, 3), (3, 17, 3)),
    (
        Error(17, "remote_error", "ZeroDivisionError", "division by zero", "Traceback ..."),
        (4, 17, "remote_error", "ZeroDivisionError", "division by zero", "Traceback ..."),
    ),
    (Cancel(17), (5, 17)),
    (Ping(99), (6, 99)),
    (Pong(99), (7, 99)),
    (Credit(3, 120), (8, 3, 120)),
]
KIND_IDS = [
    type(envelope).__name__ + ("+meta" if type(envelope) is Call and envelope.meta else "")
    for envelope, _ in EVERY_KIND
]


def test_protocol_version() -> None:
    assert PROTOCOL_VERSION == 1


@pytest.mark.parametrize(("envelope", "array"), EVERY_KIND, ids=KIND_IDS)
def test_to_wire(envelope: Envelope, array: tuple[Any, ...]) -> None:
    assert to_wire(envelope) == array


@pytest.mark.parametrize(("envelope", "array"), EVERY_KIND, ids=KIND_IDS)
def test_from_wire(envelope: Envelope, array: tuple[Any, ...]) -> None:
    decoded = from_wire(list(array))
    assert type(decoded) is type(envelope)
    assert decoded == envelope


@pytest.mark.parametrize("codec", [MsgpackCodec(), JsonCodec()], ids=["msgpack", "json"])
@pytest.mark.parametrize(("envelope", "array"), EVERY_KIND, ids=KIND_IDS)
def test_round_trip_through_frame_and_codec(
    codec: MsgpackCodec | JsonCodec, envelope: Envelope, array: tuple[Any, ...]
) -> None:
    (body,) = FrameDecoder().feed(encode_frame(codec.encode(to_wire(envelope))))
    decoded = from_wire(codec.decode(body))
    assert type(decoded) is type(envelope)
    assert decoded == envelope


def test_exact_msgpack_bytes() -> None:
    assert MsgpackCodec().encode(to_wire(Ping(7))) == b"\x92\x06\x07"
    assert MsgpackCodec().encode(to_wire(Call(17, "plus", [1, 2]))) == (
        b"\x95\x02\x11\xa4plus\x92\x01\x02\xc0"
    )
    assert MsgpackCodec().encode(to_wire(Call(17, "plus", [1, 2], {"d": 5}))) == (
        b"\x95\x02\x11\xa4plus\x92\x01\x02\x81\xa1d\x05"
    )
    assert MsgpackCodec().encode(to_wire(Credit(2, 300))) == b"\x93\x08\x02\xcd\x01\x2c"


def test_exact_json_bytes() -> None:
    assert JsonCodec().encode(to_wire(Ping(7))) == b"[6,7]"
    assert JsonCodec().encode(to_wire(Call(17, "plus", [1, 2]))) == b'[2,17,"plus",[1,2],null]'
    assert JsonCodec().encode(to_wire(Call(17, "plus", [1, 2], {"r": 9}))) == (
        b'[2,17,"plus",[1,2],{"r":9}]'
    )
    assert JsonCodec().encode(to_wire(Credit(2, 300))) == b"[8,2,300]"


def test_credit_fields() -> None:
    credit = from_wire([8, 3, 120])
    assert type(credit) is Credit
    assert (credit.messages, credit.size) == (3, 120)


def test_call_meta_defaults_to_none() -> None:
    assert Call(1, "f", []).meta is None
    assert to_wire(Call(1, "f", [])) == (2, 1, "f", [], None)


@pytest.mark.parametrize("item", [[2, 17, "plus", [1, 2]], (2, 17, "plus", [1, 2])])
def test_call_without_meta_on_the_wire(item: Any) -> None:
    # A minimal JSON client sends four items; the metadata is then None.
    decoded = from_wire(item)
    assert type(decoded) is Call
    assert decoded == Call(17, "plus", [1, 2], None)
    assert decoded.meta is None


@pytest.mark.parametrize("codec", [MsgpackCodec(), JsonCodec()], ids=["msgpack", "json"])
def test_call_meta_round_trips_unknown_keys(codec: MsgpackCodec | JsonCodec) -> None:
    envelope = Call(1, "f", [], {"d": 2001, "r": 7, "t": "00-abc-01", "future": [1, {"x": None}]})
    decoded = from_wire(codec.decode(codec.encode(to_wire(envelope))))
    assert decoded == envelope
    assert decoded.meta == envelope.meta


@pytest.mark.parametrize(
    "envelope",
    [
        Msg(b"\x00\xffraw"),
        Reply(1, [b"", b"\x80" * 300]),
        Call(2, "store", [b"key", {"blob": b"\x01\x02"}]),
        Hello(1, "Bin", {"token": b"\xde\xad\xbe\xef"}),
    ],
)
def test_msgpack_round_trips_bytes(envelope: Envelope) -> None:
    codec = MsgpackCodec()
    assert from_wire(codec.decode(codec.encode(to_wire(envelope)))) == envelope


def test_msgpack_round_trips_nested_maps_with_int_keys() -> None:
    codec = MsgpackCodec()
    envelope = Msg({1: {2: {3: "deep"}}, -7: [{0: None}], "name": {10**12: b"x"}})
    decoded = from_wire(codec.decode(codec.encode(to_wire(envelope))))
    assert decoded == envelope
    assert list(decoded.payload) == [1, -7, "name"]


def test_msg_payload_may_be_anything() -> None:
    for payload in [None, 0, "", [], {}, 1.5, True]:
        assert from_wire([1, payload]) == Msg(payload)


# Not an envelope


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"kind": 1}, "envelope must be a non-empty array, got dict"),
        ([], "envelope must be a non-empty array, got list"),
        (5, "envelope must be a non-empty array, got int"),
        ("[1, 2]", "envelope must be a non-empty array, got str"),
        (None, "envelope must be a non-empty array, got NoneType"),
        (b"\x01", "envelope must be a non-empty array, got bytes"),
    ],
)
def test_not_an_array(item: Any, message: str) -> None:
    with pytest.raises(ProtocolError) as raised:
        from_wire(item)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ([9, 1], "unknown envelope kind 9"),
        ([-1, 1], "unknown envelope kind -1"),
        (["call", 1], "unknown envelope kind 'call'"),
        ([True, 1], "unknown envelope kind True"),
        ([2.0, 17, "plus", []], "unknown envelope kind 2.0"),
        ([None], "unknown envelope kind None"),
    ],
)
def test_unknown_kind(item: list[Any], message: str) -> None:
    with pytest.raises(ProtocolError) as raised:
        from_wire(item)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ([2, 17, "plus"], "call envelope needs 3 or 4 fields, got 2"),
        ([2, 17, "plus", [], None, "extra"], "call envelope needs 3 or 4 fields, got 5"),
        ([8, 1], "credit envelope needs 2 fields, got 1"),
        ([8, 1, 2, 3], "credit envelope needs 2 fields, got 3"),
        ([0, 1, "A"], "hello envelope needs 3 fields, got 2"),
        ([4, 1, "remote_error", "E", "boom"], "error envelope needs 5 fields, got 4"),
        ([3, 1], "reply envelope needs 2 fields, got 1"),
        ([6], "ping envelope needs 1 field, got 0"),
        ([1, "a", "b"], "msg envelope needs 1 field, got 2"),
    ],
)
def test_wrong_field_count(item: list[Any], message: str) -> None:
    with pytest.raises(ProtocolError) as raised:
        from_wire(item)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ([2, "17", "plus", []], "call envelope field 'id' must be int, got str"),
        ([2, 17, b"plus", []], "call envelope field 'func' must be str, got bytes"),
        ([2, 17, "plus", {}], "call envelope field 'args' must be list, got dict"),
        ([2, 17, "plus", {}, None], "call envelope field 'args' must be list, got dict"),
        (
            [2, 17, "plus", [], "extra"],
            "call envelope field 'meta' must be dict or NoneType, got str",
        ),
        ([2, 17, "plus", [], []], "call envelope field 'meta' must be dict or NoneType, got list"),
        ([2, 17, "plus", [], 5], "call envelope field 'meta' must be dict or NoneType, got int"),
        ([8, "1", 2], "credit envelope field 'messages' must be int, got str"),
        ([8, 1, 2.0], "credit envelope field 'size' must be int, got float"),
        ([8, 1, True], "credit envelope field 'size' must be int, got bool"),
        ([0, "1", "A", {}], "hello envelope field 'version' must be int, got str"),
        ([0, 1, None, {}], "hello envelope field 'name' must be str, got NoneType"),
        ([0, 1, "A", []], "hello envelope field 'info' must be dict, got list"),
        ([3, 1.0, None], "reply envelope field 'id' must be int, got float"),
        ([4, 1, "c", "t", "m", None], "error envelope field 'traceback' must be str, got NoneType"),
        ([5, "1"], "cancel envelope field 'id' must be int, got str"),
        ([7, [1]], "pong envelope field 'token' must be int, got list"),
        # bool is an int subclass in Python, but not an id, a token or a version on the wire.
        ([2, True, "plus", []], "call envelope field 'id' must be int, got bool"),
        ([0, True, "A", {}], "hello envelope field 'version' must be int, got bool"),
        ([6, False], "ping envelope field 'token' must be int, got bool"),
    ],
)
def test_wrong_field_type(item: list[Any], message: str) -> None:
    with pytest.raises(ProtocolError) as raised:
        from_wire(item)
    assert str(raised.value) == message


def test_tuples_are_arrays_too() -> None:
    assert from_wire((6, 5)) == Ping(5)

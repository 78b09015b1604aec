"""Body codecs: msgpack, JSON, choosing one by name and sniffing one from a first frame."""

import pytest

from namewire.errors import EncodeError, ProtocolError
from namewire.wire import JsonCodec, MsgpackCodec, codec_named, sniff_codec

# msgpack


def test_msgpack_encodes_arrays() -> None:
    assert MsgpackCodec().encode((6, 7)) == b"\x92\x06\x07"


def test_msgpack_keeps_str_and_bytes_apart() -> None:
    codec = MsgpackCodec()
    assert codec.encode(["a", b"a"]) == b"\x92\xa1a\xc4\x01a"
    assert codec.decode(b"\x92\xa1a\xc4\x01a") == ["a", b"a"]


def test_msgpack_nested_maps_with_int_keys() -> None:
    codec = MsgpackCodec()
    value = {1: {2: "two", "three": [3, {-4: b"four"}]}, "x": None}
    assert codec.decode(codec.encode(value)) == value


def test_msgpack_decodes_arrays_as_lists() -> None:
    assert MsgpackCodec().decode(b"\x92\x06\x07") == [6, 7]


def test_msgpack_refuses_unknown_types() -> None:
    with pytest.raises(EncodeError) as raised:
        MsgpackCodec().encode([object()])
    assert str(raised.value) == "cannot encode with msgpack: can not serialize 'object' object"


def test_msgpack_refuses_ints_over_64_bits() -> None:
    with pytest.raises(EncodeError) as raised:
        MsgpackCodec().encode(2**64)
    assert str(raised.value) == "cannot encode with msgpack: Integer value out of range"


def test_msgpack_encodes_cleanly_after_a_failure() -> None:
    codec = MsgpackCodec()
    with pytest.raises(EncodeError):
        codec.encode([1, 2, object()])
    assert codec.encode([3]) == b"\x91\x03"


def test_encode_error_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        MsgpackCodec().encode(object())


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xc1", "undecodable msgpack body of 1 bytes: FormatError: "),
        (
            b"\x92\x01",
            "undecodable msgpack body of 2 bytes: ValueError: Unpack failed: incomplete input",
        ),
        (
            b"\x01\x02",
            "undecodable msgpack body of 2 bytes: ExtraData: unpack(b) received extra data.",
        ),
        (
            b"\xa1\xff",
            (
                "undecodable msgpack body of 2 bytes: UnicodeDecodeError: "
                "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"
            ),
        ),
    ],
    ids=["reserved-byte", "truncated", "extra-data", "bad-utf8"],
)
def test_msgpack_undecodable(body: bytes, message: str) -> None:
    with pytest.raises(ProtocolError) as raised:
        MsgpackCodec().decode(body)
    assert str(raised.value) == message


def test_msgpack_empty_body() -> None:
    with pytest.raises(ProtocolError) as raised:
        MsgpackCodec().decode(b"")
    assert str(raised.value).startswith("undecodable msgpack body of 0 bytes: ")


def test_msgpack_deep_nesting() -> None:
    with pytest.raises(ProtocolError) as raised:
        MsgpackCodec().decode(b"\x91" * 100000)
    assert str(raised.value).startswith("undecodable msgpack body of 100000 bytes: ")


def test_msgpack_announced_length_beyond_body() -> None:
    # A 4 GiB bin header in a 5-byte body: refused, not allocated.
    with pytest.raises(ProtocolError) as raised:
        MsgpackCodec().decode(b"\xc6\xff\xff\xff\xff")
    assert str(raised.value).startswith("undecodable msgpack body of 5 bytes: ")


# JSON


def test_json_encodes_compactly() -> None:
    assert JsonCodec().encode((0, 1, "A", {"k": [1.5, None, True]})) == (
        b'[0,1,"A",{"k":[1.5,null,true]}]'
    )


def test_json_round_trip() -> None:
    codec = JsonCodec()
    value = [1, -2.5, "é", None, False, {"a": {"b": []}}]
    assert codec.decode(codec.encode(value)) == value


def test_json_refuses_bytes() -> None:
    with pytest.raises(EncodeError) as raised:
        JsonCodec().encode([b"x"])
    assert str(raised.value) == (
        "cannot encode with json: Object of type bytes is not JSON serializable"
    )


def test_json_refuses_nan() -> None:
    with pytest.raises(EncodeError) as raised:
        JsonCodec().encode([float("nan")])
    assert str(raised.value) == (
        "cannot encode with json: Out of range float values are not JSON compliant"
    )


def test_json_refuses_tuple_keys() -> None:
    with pytest.raises(EncodeError) as raised:
        JsonCodec().encode({(1, 2): 3})
    assert str(raised.value) == (
        "cannot encode with json: keys must be str, int, float, bool or None, not tuple"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "undecodable json body of 0 bytes: Expecting value: line 1 column 1 (char 0)"),
        (b"[1,", "undecodable json body of 3 bytes: Expecting value: line 1 column 4 (char 3)"),
        (
            b'["\xff"]',
            (
                "undecodable json body of 5 bytes: "
                "'utf-8' codec can't decode byte 0xff in position 2: invalid start byte"
            ),
        ),
        (b"[1] [2]", "undecodable json body of 7 bytes: Extra data: line 1 column 5 (char 4)"),
    ],
    ids=["empty", "truncated", "bad-utf8", "extra-data"],
)
def test_json_undecodable(body: bytes, message: str) -> None:
    with pytest.raises(ProtocolError) as raised:
        JsonCodec().decode(body)
    assert str(raised.value) == message


def test_json_deep_nesting() -> None:
    # The parser recurses; running out of stack is bad input, not a RecursionError for the caller.
    with pytest.raises(ProtocolError) as raised:
        JsonCodec().decode(b"[" * 100000)
    assert str(raised.value).startswith("undecodable json body of 100000 bytes: ")


def test_json_refuses_deep_nesting_on_encode() -> None:
    value: list[object] = []
    for _ in range(100000):
        value = [value]
    with pytest.raises(EncodeError):
        JsonCodec().encode(value)


# Choosing a codec


def test_codec_named() -> None:
    assert isinstance(codec_named("msgpack"), MsgpackCodec)
    assert isinstance(codec_named("json"), JsonCodec)
    assert codec_named("msgpack").name == "msgpack"
    assert codec_named("json").name == "json"


def test_codec_named_unknown() -> None:
    with pytest.raises(ValueError) as raised:
        codec_named("xml")
    assert str(raised.value) == "unknown codec 'xml': expected 'msgpack' or 'json'"


@pytest.mark.parametrize(
    ("body", "name"),
    [
        (b'[0,1,"A",{}]', "json"),
        (b"\x94\x00\x01\xa1A\x80", "msgpack"),
        (b"\x90", "msgpack"),
        (b"\x9f", "msgpack"),
        (b"\xdc\x00\x04", "msgpack"),
        (b"\xdd\x00\x00\x00\x04", "msgpack"),
    ],
)
def test_sniff_codec(body: bytes, name: str) -> None:
    assert sniff_codec(body).name == name


@pytest.mark.parametrize(
    ("body", "lead"),
    [
        (b"", "b''"),
        (b'{"a":1}', "b'{'"),
        (b" [0]", "b' '"),
        (b"\x80", "b'\\x80'"),
        (b"\xa0", "b'\\xa0'"),
    ],
)
def test_sniff_codec_refuses(body: bytes, lead: str) -> None:
    with pytest.raises(ProtocolError) as raised:
        sniff_codec(body)
    assert str(raised.value) == (
        f"first frame is not a hello in msgpack or json (starts with {lead})"
    )

"""FrameDecoder and encode_frame: bytes in, frame bodies out."""

import pytest

from namewire.errors import NamewireError, ProtocolError
from namewire.wire import DEFAULT_MAX_FRAME, HEADER_SIZE, FrameDecoder, encode_frame

ORIGIN = "tcp://127.0.0.1:53412"


def header(size: int) -> bytes:
    return size.to_bytes(4, "big")


# encode_frame


def test_encode_frame_prefixes_big_endian_length() -> None:
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"


def test_encode_frame_empty_body() -> None:
    assert encode_frame(b"") == b"\x00\x00\x00\x00"


def test_encode_frame_length_above_one_byte() -> None:
    assert encode_frame(b"x" * 0x0102)[:4] == b"\x00\x00\x01\x02"


def test_constants() -> None:
    assert HEADER_SIZE == 4
    assert DEFAULT_MAX_FRAME == 16777216


# Chunking


def test_one_frame_in_one_read() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x00\x00\x00\x03abc") == [b"abc"]
    assert decoder.buffered == 0


def test_empty_read() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"") == []
    assert decoder.buffered == 0


def test_one_byte_at_a_time() -> None:
    decoder = FrameDecoder()
    data = b"\x00\x00\x00\x03abc"
    for byte in data[:-1]:
        assert decoder.feed(bytes([byte])) == []
    assert decoder.buffered == 6
    assert decoder.feed(data[-1:]) == [b"abc"]
    assert decoder.buffered == 0


def test_many_frames_one_byte_at_a_time() -> None:
    decoder = FrameDecoder()
    data = encode_frame(b"one") + encode_frame(b"") + encode_frame(b"three")
    bodies = []
    for byte in data:
        bodies += decoder.feed(bytes([byte]))
    assert bodies == [b"one", b"", b"three"]
    assert decoder.buffered == 0


def test_many_frames_in_one_read() -> None:
    decoder = FrameDecoder()
    data = b"".join(encode_frame(b"%d" % i) for i in range(100))
    assert decoder.feed(data) == [b"%d" % i for i in range(100)]
    assert decoder.buffered == 0


def test_many_frames_and_a_partial_one_in_one_read() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(encode_frame(b"a") + encode_frame(b"b") + b"\x00\x00\x00\x02c") == [
        b"a",
        b"b",
    ]
    assert decoder.buffered == 5
    assert decoder.feed(b"d") == [b"cd"]
    assert decoder.buffered == 0


def test_split_at_every_offset() -> None:
    data = encode_frame(b"hello") + encode_frame(b"") + encode_frame(b"world!")
    for cut in range(len(data) + 1):
        decoder = FrameDecoder()
        bodies = decoder.feed(data[:cut])
        assert decoder.buffered == cut - sum(HEADER_SIZE + len(b) for b in bodies)
        bodies += decoder.feed(data[cut:])
        assert bodies == [b"hello", b"", b"world!"], cut
        assert decoder.buffered == 0


def test_split_at_every_pair_of_offsets() -> None:
    data = encode_frame(b"ab") + encode_frame(b"cde")
    for first in range(len(data) + 1):
        for second in range(first, len(data) + 1):
            decoder = FrameDecoder()
            bodies = decoder.feed(data[:first])
            bodies += decoder.feed(data[first:second])
            bodies += decoder.feed(data[second:])
            assert bodies == [b"ab", b"cde"], (first, second)
            assert decoder.buffered == 0


def test_zero_length_body() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x00\x00\x00\x00") == [b""]
    assert decoder.buffered == 0


def test_zero_length_bodies_in_one_read() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x00\x00\x00\x00" * 3) == [b"", b"", b""]


def test_incomplete_header_is_buffered() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x00\x00\x00") == []
    assert decoder.buffered == 3
    assert decoder.feed(b"\x01x") == [b"x"]


def test_bodies_are_bytes() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"\x00\x00")
    (body,) = decoder.feed(b"\x00\x01z")
    assert type(body) is bytes


@pytest.mark.parametrize("wrap", [bytearray, memoryview], ids=["bytearray", "memoryview"])
def test_reads_other_than_bytes(wrap: type) -> None:
    # A buffered protocol hands over memoryviews; the incomplete tail must survive the read.
    decoder = FrameDecoder()
    assert decoder.feed(wrap(b"\x00\x00\x00\x01a\x00\x00")) == [b"a"]
    assert decoder.buffered == 2
    assert decoder.feed(wrap(b"\x00\x02bc")) == [b"bc"]
    assert decoder.buffered == 0


# Size limit


def test_exactly_at_limit_is_accepted() -> None:
    decoder = FrameDecoder(max_size=3)
    assert decoder.feed(b"\x00\x00\x00\x03abc") == [b"abc"]


def test_limit_plus_one_is_rejected_from_the_header_alone() -> None:
    decoder = FrameDecoder(max_size=3)
    with pytest.raises(ProtocolError) as raised:
        decoder.feed(b"\x00\x00\x00\x04")
    assert str(raised.value) == "frame of 4 bytes exceeds limit of 3 bytes"
    assert decoder.buffered == 0


def test_oversize_names_the_origin() -> None:
    decoder = FrameDecoder(origin=ORIGIN)
    with pytest.raises(ProtocolError) as raised:
        decoder.feed(header(20000000))
    assert str(raised.value) == (
        "frame of 20000000 bytes exceeds limit of 16777216 bytes (from tcp://127.0.0.1:53412)"
    )


def test_default_limit_accepts_its_size_without_allocating() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(header(16777216)) == []
    # Only the header is held: nothing is reserved for the announced body.
    assert decoder.buffered == 4


def test_default_limit_plus_one() -> None:
    with pytest.raises(ProtocolError) as raised:
        FrameDecoder().feed(header(16777217))
    assert str(raised.value) == "frame of 16777217 bytes exceeds limit of 16777216 bytes"


def test_largest_length_prefix() -> None:
    with pytest.raises(ProtocolError) as raised:
        FrameDecoder().feed(b"\xff\xff\xff\xff")
    assert str(raised.value) == "frame of 4294967295 bytes exceeds limit of 16777216 bytes"


def test_oversize_header_split_across_reads() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x01\x31") == []
    with pytest.raises(ProtocolError) as raised:
        decoder.feed(b"\x2d\x00")
    assert str(raised.value) == "frame of 20000000 bytes exceeds limit of 16777216 bytes"


def test_oversize_after_a_good_frame_in_the_same_read() -> None:
    decoder = FrameDecoder(max_size=10)
    with pytest.raises(ProtocolError) as raised:
        decoder.feed(encode_frame(b"ok") + header(11) + b"x" * 11)
    assert str(raised.value) == "frame of 11 bytes exceeds limit of 10 bytes"


def test_protocol_error_is_a_namewire_error() -> None:
    with pytest.raises(NamewireError):
        FrameDecoder(max_size=1).feed(header(2))


@pytest.mark.parametrize("max_size", [0, -1])
def test_max_size_must_be_positive(max_size: int) -> None:
    with pytest.raises(ValueError) as raised:
        FrameDecoder(max_size=max_size)
    assert str(raised.value) == f"max_size must be positive, not {max_size}"


# After an error


def test_error_is_final_on_the_fast_path() -> None:
    decoder = FrameDecoder(max_size=3)
    with pytest.raises(ProtocolError):
        decoder.feed(header(4) + b"abcd")
    # What follows is not at a frame boundary any more; it must not be read as frames.
    with pytest.raises(ProtocolError) as raised:
        decoder.feed(encode_frame(b"ok"))
    assert str(raised.value) == "frame of 4 bytes exceeds limit of 3 bytes"


def test_error_is_final_on_the_buffered_path() -> None:
    decoder = FrameDecoder(max_size=3)
    decoder.feed(b"\x00\x00")
    # Keep the exception (and its traceback) alive, as a test runner or a logger would.
    with pytest.raises(ProtocolError) as first:
        decoder.feed(b"\x00\x04")
    with pytest.raises(ProtocolError) as second:
        decoder.feed(b"more")
    assert str(second.value) == str(first.value) == "frame of 4 bytes exceeds limit of 3 bytes"
    assert decoder.buffered == 0

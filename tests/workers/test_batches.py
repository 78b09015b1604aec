"""The worker channel's batches, sans I/O: what the outbox accepts, how it cuts batches, and how
the core's message credit maps back to values and bytes."""

from __future__ import annotations

import msgpack
import pytest

from namewire.errors import EncodeError, MessageTooLarge, ProtocolError
from namewire.workers._batches import (
    BATCH_OVERHEAD,
    BATCHES_IN_FLIGHT,
    FULL_BATCH,
    Outbox,
    decode_batch,
    encode_value,
)


def test_values_count_against_the_bound_until_their_batch_is_credited() -> None:
    box = Outbox(maxsize=8, max_bytes=1 << 20)
    assert box.per_batch == 2  # 8 values over BATCHES_IN_FLIGHT (4) batches
    offers = [box.offer(i) for i in range(8)]
    assert offers == [1, FULL_BATCH] * 4
    assert box.offer(8) == 0  # full: the ninth waits
    payloads = []
    for _ in range(BATCHES_IN_FLIGHT):
        payload, count, size = box.next_batch(1 << 20)
        assert (count, size) == (2, 2)
        box.sent(count, size)
        payloads.append(payload)
    assert [decode_batch(p) for p in payloads] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert not box.waiting and box.held == 8
    assert not box.credited(4)  # nothing credited yet
    assert box.credited(3)  # the oldest batch was taken: its two values make room
    assert (box.held, box.held_bytes) == (6, 6)
    assert box.offer(8) == 1


def test_the_byte_bound_holds_and_one_large_value_passes_alone() -> None:
    box = Outbox(maxsize=100, max_bytes=1000)
    big = b"x" * 400  # 403 bytes packed (bin 16)
    assert box.offer(big) and box.offer(big)
    assert box.offer(big) == 0  # 3 x 403 bytes is over 1000
    huge = Outbox(maxsize=100, max_bytes=1000)
    assert huge.offer(b"y" * 5000)  # alone, as the core lets one large message pass
    assert huge.offer(1) == 0


def test_a_batch_stays_under_the_frame_limit_and_everything_can_leave_at_once() -> None:
    box = Outbox(maxsize=1000, max_bytes=1 << 20)
    for _ in range(10):
        box.offer(b"z" * 98)  # 100 bytes packed
    payload, count, size = box.next_batch(450 + BATCH_OVERHEAD)
    assert (count, size) == (4, 400)
    assert len(payload) <= 450
    box.sent(count, size)
    payload, count, _ = box.next_batch(1 << 20, everything=True)
    assert count == 6 and len(decode_batch(payload)) == 6


def test_a_batch_that_is_not_one_is_a_protocol_error_naming_what_came() -> None:
    with pytest.raises(ProtocolError, match="must be bytes, not list"):
        decode_batch([1, 2])
    with pytest.raises(ProtocolError, match="must be a msgpack array, not int"):
        decode_batch(msgpack.packb(7))
    with pytest.raises(ProtocolError, match="undecodable msgpack"):
        decode_batch(b"\xc1")


def test_a_value_that_cannot_be_packed_or_is_too_large_is_not_accepted() -> None:
    box = Outbox(maxsize=10, max_bytes=1 << 20, what="put() on channel 'c'")
    with pytest.raises(EncodeError):
        box.offer(object())
    with pytest.raises(EncodeError):
        box.offer(2**70)
    box.value_limit = 100
    with pytest.raises(MessageTooLarge) as info:
        box.offer(b"x" * 200)
    assert info.value.what == "put() on channel 'c'"
    assert info.value.size == 202 + BATCH_OVERHEAD and info.value.limit == 100 + BATCH_OVERHEAD
    assert (box.held, box.held_bytes, box.waiting) == (0, 0, [])
    assert box.offer(b"x" * 90) == 1

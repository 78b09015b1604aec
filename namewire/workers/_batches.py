"""How a worker channel carries several values in one message of its session.

A ``put`` packs its value at once (so a value that cannot cross is refused there, naming itself,
and its encoded size is known) and adds it to the `Outbox`. What the outbox holds leaves as
**batches**: one session message whose payload is a msgpack array of the values, packed one after
another behind an array header. A producer that puts faster than the stream drains therefore pays
the protocol core's per-message cost once per batch, not once per value.

The bound is counted in values and bytes, not messages: the outbox holds everything a ``put``
accepted and the other side has not taken yet (waiting here, in flight, or unread there), and a
``put`` waits while that is ``maxsize`` values or ``max_bytes`` bytes. The other side returns a
batch's credit (the core's message credit) once its last value is taken, and `Outbox.credited`
maps the core's count of uncredited messages back to values. The session's own message window
(`BATCHES_IN_FLIGHT` messages) only paces how many batches travel at once; its half-window
credit rule then returns credit every couple of batches, so the producer refills while the
consumer reads the rest.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import msgpack

from ..errors import EncodeError, MessageTooLarge, ProtocolError
from ..wire import DEFAULT_MAX_FRAME, codec_named

__all__ = ["BATCHES_IN_FLIGHT", "BATCH_OVERHEAD", "FULL_BATCH", "Outbox", "decode_batch",
           "encode_value"]

# Messages (batches) of a channel's session in flight at once; the core returns credit each
# BATCHES_IN_FLIGHT // 2 of them, or when the reader has caught up.
BATCHES_IN_FLIGHT = 4
# Bytes a batch's envelope adds to its values (envelope array, kind, bin and array headers).
BATCH_OVERHEAD = 16

_MSGPACK = codec_named("msgpack")  # the wire's codec: values decode as any message payload does
# Packed with the wire codec's options, by a packer of our own that put() calls without the
# codec's wrapper; pack() runs in C without releasing the GIL and resets itself, even after an
# error, so the threads of thread workers can share it.
_pack = msgpack.Packer(use_bin_type=True).pack
_array_header = msgpack.Packer().pack_array_header  # returns bytes (autoreset)


def encode_value(value: Any) -> bytes:
    """``value`` packed as the wire's msgpack codec packs it; `EncodeError` if it cannot be."""
    try:
        packed: bytes = _pack(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise EncodeError(f"cannot encode with msgpack: {exc}") from None
    return packed

FULL_BATCH = 2  # what `Outbox.offer` answers when the waiting values make a full batch


def decode_batch(payload: Any) -> list[Any]:
    """The values of a batch; `ProtocolError` if ``payload`` is not one (a broken other end)."""
    if not isinstance(payload, bytes):
        raise ProtocolError(f"a worker channel batch must be bytes, not {type(payload).__name__}")
    values = _MSGPACK.decode(payload)
    if not isinstance(values, list):
        raise ProtocolError(
            f"a worker channel batch must be a msgpack array, not {type(values).__name__}"
        )
    return values


class Outbox:
    """What one end accepted to send and the other end has not taken yet, in values and bytes.

    ``waiting`` holds packed values not yet handed to the session; ``_sent`` one (values, bytes)
    entry per batch handed over and not yet credited, oldest first (credit comes back in order).
    """

    __slots__ = (
        "_sent",
        "held",
        "held_bytes",
        "max_bytes",
        "maxsize",
        "per_batch",
        "value_limit",
        "waiting",
        "waiting_bytes",
        "what",
    )

    def __init__(self, maxsize: int, max_bytes: int, what: str = "put()") -> None:
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.what = what  # what a refused value was being sent by, for `MessageTooLarge`
        # The largest packed value a batch carries alone: the other end's frame limit, less.
        self.value_limit = DEFAULT_MAX_FRAME - BATCH_OVERHEAD
        # Full batches of this many values keep BATCHES_IN_FLIGHT of them about one window.
        self.per_batch = max(1, -(-maxsize // BATCHES_IN_FLIGHT))
        self.waiting: list[bytes] = []
        self.waiting_bytes = 0
        self._sent: deque[tuple[int, int]] = deque()
        self.held = 0
        self.held_bytes = 0

    def offer(self, value: Any) -> int:
        """Pack ``value`` and accept it if there is room: 0 if not, `FULL_BATCH` if the waiting
        values now make a full batch, else 1. One value larger than the byte bound passes alone,
        as a message larger than the core's byte window does. Raises `EncodeError` for a value
        msgpack cannot carry, `MessageTooLarge` past ``value_limit``; nothing is accepted then."""
        try:
            packed: bytes = _pack(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise EncodeError(f"cannot encode with msgpack: {exc}") from None
        size = len(packed)
        if size > self.value_limit:
            raise MessageTooLarge(self.what, size + BATCH_OVERHEAD,
                                  self.value_limit + BATCH_OVERHEAD)
        held_bytes = self.held_bytes
        if self.held >= self.maxsize or (held_bytes and held_bytes + size > self.max_bytes):
            return 0
        waiting = self.waiting
        waiting.append(packed)
        self.waiting_bytes += size
        self.held += 1
        self.held_bytes = held_bytes + size
        return FULL_BATCH if len(waiting) % self.per_batch == 0 else 1

    def next_batch(self, frame_limit: int, *, everything: bool = False) -> tuple[bytes, int, int]:
        """The payload of the next batch from the waiting values, its value count and their bytes
        (not yet taken out: `sent` does that once the session accepted it). A batch holds at most
        `per_batch` values (``everything``: all that wait) and stays under ``frame_limit``."""
        waiting = self.waiting
        most = len(waiting) if everything else min(len(waiting), self.per_batch)
        budget = frame_limit - BATCH_OVERHEAD
        if most == len(waiting) and self.waiting_bytes <= budget:  # the usual case: all of them
            return _array_header(most) + b"".join(waiting), most, self.waiting_bytes
        count = size = 0
        for packed in waiting[:most]:
            if count and size + len(packed) > budget:
                break
            count += 1
            size += len(packed)
        return _array_header(count) + b"".join(waiting[:count]), count, size

    def sent(self, count: int, size: int) -> None:
        """The session took the batch `next_batch` described: it is in flight now."""
        del self.waiting[:count]
        self.waiting_bytes -= size
        self._sent.append((count, size))

    def credited(self, unacked_messages: int) -> bool:
        """The session reports ``unacked_messages`` batches still uncredited: forget the older
        ones (the other side took all their values). True if that made room."""
        sent = self._sent
        freed = False
        while len(sent) > unacked_messages:
            count, size = sent.popleft()
            self.held -= count
            self.held_bytes -= size
            freed = True
        return freed

    def clear(self) -> None:
        """A new link: nothing is waiting or in flight on it."""
        self.value_limit = DEFAULT_MAX_FRAME - BATCH_OVERHEAD  # until the other end's hello
        self.waiting.clear()
        self._sent.clear()
        self.waiting_bytes = self.held = self.held_bytes = 0

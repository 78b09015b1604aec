"""`Mailbox`: the queue behind `Node.get_msg`, bounded per sender by the message window."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from ..transport import Session

__all__ = ["Mailbox"]


class Mailbox:
    """Ordinary messages as ``(sender_name, msg)``.

    `put` never blocks (it runs inside a protocol callback). What bounds the mailbox is the message
    window of each connection (`RpcConnection`): a sender may have at most ``mailbox_size`` messages
    and ``mailbox_bytes`` bytes unread here; beyond that its ``send_msg`` waits, while its calls go
    on. `get` hands the credit back. Messages a node sends itself wait in `put_waiting` beyond
    ``maxsize``. Nothing is dropped.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize <= 0:
            raise ValueError(f"mailbox size must be positive, not {maxsize}")
        self.maxsize = maxsize
        self._items: deque[tuple[str, Any, Session | None, int]] = deque()
        self._getters: deque[asyncio.Future[tuple[str, Any]]] = deque()
        self._own = 0  # messages of this node to itself in the queue
        self._room: deque[asyncio.Future[None]] = deque()  # put_waiting() calls waiting for room

    def __len__(self) -> int:
        return len(self._items)

    def put(self, sender: str, msg: Any, session: Session | None, size: int = 0) -> None:
        getters = self._getters
        while getters:
            getter = getters.popleft()
            if not getter.done():
                getter.set_result((sender, msg))
                if session is not None:
                    session.message_consumed(size)
                return
        if session is None:
            self._own += 1
        self._items.append((sender, msg, session, size))

    async def put_waiting(self, sender: str, msg: Any) -> None:
        """`put` for messages a node sends itself: waits while ``maxsize`` of them are queued."""
        while self._own >= self.maxsize:
            room: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._room.append(room)
            await room
        self.put(sender, msg, None)

    async def get(self) -> tuple[str, Any]:
        if self._items:
            sender, msg, session, size = self._items.popleft()
            if session is not None:
                session.message_consumed(size)
            else:
                self._own -= 1
                while self._room:
                    room = self._room.popleft()
                    if not room.done():
                        room.set_result(None)
                        break
            return sender, msg
        getter: asyncio.Future[tuple[str, Any]] = asyncio.get_running_loop().create_future()
        self._getters.append(getter)
        try:
            return await getter
        except asyncio.CancelledError:
            # Cancelled after a message was handed over: put it back at the front, not lose it.
            # (Its credit has gone back to the sender already: one message over the window.)
            if getter.done() and not getter.cancelled():
                sender, msg = getter.result()
                self._items.appendleft((sender, msg, None, 0))
                self._own += 1
            raise

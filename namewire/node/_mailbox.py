"""`Mailbox`: the bounded queue behind `Node.get_msg`, with back-pressure on the senders."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from ..transport import Session

__all__ = ["Mailbox"]


class Mailbox:
    """Ordinary messages as ``(sender_name, msg)``.

    `put` never blocks (it runs inside a protocol callback). When the mailbox holds ``maxsize``
    messages, the session that delivered the last one stops being read, so the kernel buffers fill
    and the sender's `send_msg` waits for drain; reading resumes once the mailbox is half empty.
    Nothing is dropped.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize <= 0:
            raise ValueError(f"mailbox size must be positive, not {maxsize}")
        self.maxsize = maxsize
        self._items: deque[tuple[str, Any]] = deque()
        self._getters: deque[asyncio.Future[tuple[str, Any]]] = deque()
        self._held: set[Session] = set()
        self._room: deque[asyncio.Future[None]] = deque()  # put_waiting() calls waiting for room

    def __len__(self) -> int:
        return len(self._items)

    def put(self, sender: str, msg: Any, session: Session | None) -> None:
        getters = self._getters
        while getters:
            getter = getters.popleft()
            if not getter.done():
                getter.set_result((sender, msg))
                return
        self._items.append((sender, msg))
        if session is not None and len(self._items) >= self.maxsize and session not in self._held:
            self._held.add(session)
            session.hold_reading("mailbox")

    async def put_waiting(self, sender: str, msg: Any) -> None:
        """`put` for messages a node sends itself: waits while the mailbox is full."""
        while len(self._items) >= self.maxsize:
            room: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._room.append(room)
            await room
        self.put(sender, msg, None)

    async def get(self) -> tuple[str, Any]:
        if self._items:
            item = self._items.popleft()
            if self._held and len(self._items) <= self.maxsize // 2:
                self._release()
            while self._room:
                room = self._room.popleft()
                if not room.done():
                    room.set_result(None)
                    break
            return item
        getter: asyncio.Future[tuple[str, Any]] = asyncio.get_running_loop().create_future()
        self._getters.append(getter)
        try:
            return await getter
        except asyncio.CancelledError:
            # Cancelled after a message was handed over: put it back at the front, not lose it.
            if getter.done() and not getter.cancelled():
                self._items.appendleft(getter.result())
            raise

    def _release(self) -> None:
        held, self._held = self._held, set()
        for session in held:
            session.release_reading("mailbox")

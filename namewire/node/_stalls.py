"""Dropping connections whose frame, once begun, stops arriving.

A peer can announce a large frame, send a few bytes of it and stop: the connection then holds those
bytes (at most the frame limit, 16 MiB) for as long as it stays open, and liveness pings do not help
while the peer answers them. The handshake deadline covers this before the hello; after it, a
sweep every ``timeout / 2`` seconds looks at each open session's incomplete frame and closes the
connection when neither that frame grew nor any frame completed for ``timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from ..errors import ProtocolError
from ..transport import Session

__all__ = ["watch_stalled_frames"]

log = logging.getLogger("namewire.node")


async def watch_stalled_frames(
    sessions: Callable[[], Iterable[Session]], timeout: float, node_name: str
) -> None:
    """Run until cancelled; see the module docstring. ``sessions()`` gives the open sessions."""
    loop = asyncio.get_running_loop()
    # session -> (when its incomplete frame was first seen in this state, that state)
    seen: dict[Session, tuple[float, tuple[int, float]]] = {}
    while True:
        await asyncio.sleep(timeout / 2)
        now = loop.time()
        still: dict[Session, tuple[float, tuple[int, float]]] = {}
        for session in list(sessions()):
            partial = session.partial_bytes
            if not partial or session.is_closed:
                continue
            state = (partial, session.connection.last_received)
            before = seen.get(session)
            if before is None or before[1] != state:
                still[session] = (now, state)
            elif now - before[0] >= timeout:
                exc = ProtocolError(
                    f"a frame begun from {session.origin} made no progress for {timeout:g}s "
                    f"({partial} bytes of it arrived)",
                    origin=session.origin or None,
                )
                log.warning("%r: closing connection %r (%s): %s", node_name, session.peer_name,
                            session.origin, exc)
                session.abort(exc)
            else:
                still[session] = before
        seen = still

"""`GroupRouter`: calls and messages to a group name go to one of its live members.

A group is N instances of one service (``namewire run app.py --workers N``): each registers under
its own name (``PlusServer/1``, ``PlusServer/2``...) with ``Registration.group`` set to the group's
name (``PlusServer``). A name that is not registered itself but has members is a group:

- ``rpc_call(group, ...)`` goes to the member with the fewest of our calls pending (ties rotate);
- ``send_msg(group, ...)`` stays with one member while it lives, so this sender's messages keep
  their order; when that member leaves, the next message picks another;
- a member we cannot reach (it died, its leave not yet seen) is skipped before anything is sent
  to it, so only calls already sent to a dying member fail (`PeerLost`).
"""

from __future__ import annotations

import asyncio
import itertools
from typing import TYPE_CHECKING

from ..errors import NameNotFound, PeerLost, TransportError
from ..registry import Registry
from ..transport import Session

if TYPE_CHECKING:
    from ._node import Node

__all__ = ["GroupRouter", "member_name"]

# How long the fast path trusts the member list it last fetched; joins are seen within this.
# Leaves are seen at once: a member that left has no open route.
MEMBERS_FRESH = 1.0


def member_name(group: str, index: int) -> str:
    """The name of a group's ``index``-th instance: ``PlusServer/2``."""
    return f"{group}/{index}"


class GroupRouter:
    def __init__(self, node: Node) -> None:
        self._node = node
        self.known: set[str] = set()  # names found to be groups: later uses skip the name look-up
        self._sticky: dict[str, str] = {}
        self._turn = itertools.count()
        self._fast_turn = itertools.count()
        self._members: dict[str, tuple[list[str], float]] = {}  # names, and when fetched

    def open_member(self, group: str, *, sticky: bool) -> Session | None:
        """The fast path (no await): an open route to a member of ``group``, chosen as `session`
        would, from the members fetched less than a second ago; None to take the slow path."""
        entry = self._members.get(group)
        if entry is None:
            return None
        names, fetched = entry
        if asyncio.get_running_loop().time() - fetched > MEMBERS_FRESH:
            return None
        routes = self._node._routes.by_name
        if sticky:
            chosen = self._sticky.get(group)
            route = routes.get(chosen) if chosen is not None else None
            return route if route is not None and route.is_open else None
        count = len(names)
        start = next(self._fast_turn) % count  # its own counter: the slow path's must not skip
        best: Session | None = None
        least = 0
        for i in range(count):
            route = routes.get(names[(start + i) % count])
            if route is None or not route.is_open:
                return None  # a member without a route yet (or one that left): the slow path
            load = route.pending_count
            if best is None or load < least:
                best, least = route, load
        return best

    async def is_group(self, name: str, registry: Registry) -> bool:
        if await registry.members(name):
            self.known.add(name)
            return True
        return False

    async def session(self, group: str, registry: Registry, *, sticky: bool) -> Session:
        """An open session to a live member of ``group``; `NameNotFound` when none is left."""
        unreachable: list[str] = []
        while True:
            members = [m.name for m in await registry.members(group)
                       if m.name not in unreachable and m.name != self._node.name]
            if not unreachable:
                self._members[group] = (members, asyncio.get_running_loop().time())
            if not members:
                self.known.discard(group)
                self._members.pop(group, None)
                why = f"group {group!r} has no live member"
                if unreachable:
                    why += f" (could not reach {', '.join(unreachable)})"
                raise NameNotFound(group, why)
            name = self._pick(group, members, sticky)
            route = self._node._routes.by_name.get(name)
            if route is not None and route.is_open:
                return route
            try:
                return await self._node._route(name)
            except (PeerLost, TransportError, NameNotFound):
                # Not reached, so nothing was sent to it: try the others.
                registry.forget(name)
                unreachable.append(name)
                if self._sticky.get(group) == name:
                    del self._sticky[group]

    def _pick(self, group: str, members: list[str], sticky: bool) -> str:
        if sticky:
            chosen = self._sticky.get(group)
            if chosen in members:
                return chosen
        routes = self._node._routes.by_name

        def load(name: str) -> int:
            route = routes.get(name)
            return route.pending_count if route is not None and route.is_open else 0

        least = min(load(m) for m in members)
        candidates = [m for m in members if load(m) == least]
        name = candidates[next(self._turn) % len(candidates)]
        if sticky:
            self._sticky[group] = name
        return name

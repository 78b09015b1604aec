"""`RouteTable`: a node's connections by peer name, and the look-up + connect behind a first use."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ..errors import NameNotFound, PeerLost, TransportError
from ..registry import Registration, Registry, host_id
from ..transport import Session, connect_session, scheme_of

if TYPE_CHECKING:
    from ._node import Node

__all__ = ["RouteTable", "carried_message"]


def carried_message(name: str, msg: object) -> dict[str, object]:
    """What goes to the carrier of ``name`` for it: the carrier delivers ``msg`` to ``name``, from
    the sender of this envelope (docs/web.md: the gateway's ``{"to", "msg"}``)."""
    return {"to": name, "msg": msg}


class RouteTable:
    """One route (an open `Session`) per peer name, inbound or outbound.

    A hello name is a claim, so a connection the peer opened becomes the route to that name only
    when nobody else can be meant: the registry does not know the name (a caller that does not
    listen, such as the CLI, is reachable over the connection it made; the route ends when the name
    registers), or the registration's identity is the one the connection proved with its
    certificate. Otherwise the node connects to the registered address itself. Concurrent first
    uses of a name share one look-up and one connect (`open`).

    A carried name (`Registration.via`, a gateway's browser session) is never a key of
    ``by_name``: `open` answers with the route to its carrier and `carried` remembers the pair,
    so that the node wraps what it sends there (`carried_message`), until the name leaves or
    changes.
    """

    def __init__(self, node: Node) -> None:
        self._node = node
        self.by_name: dict[str, Session] = {}  # read directly on the hot path
        self.sessions: set[Session] = set()
        self.inbound: dict[str, Session] = {}  # connections peers opened, by their hello name
        self._connecting: dict[str, asyncio.Task[Session]] = {}
        self._known: set[str] = set()  # names connected to before: a new connect is a reconnect
        self.carried: dict[str, str] = {}  # carried name -> its carrier's name

    async def open(self, name: str, registry: Registry) -> Session:
        """The session to ``name`` (to its carrier, for a carried name): look it up and connect
        once, however many callers ask at once."""
        return self.carrier_route(name) or await self._open_shared(name, registry)

    def carrier_route(self, name: str) -> Session | None:
        """The open route to the carrier of ``name``, if it is a carried name we resolved."""
        via = self.carried.get(name)
        if via is None:
            return None
        route = self.by_name.get(via)
        return route if route is not None and route.is_open else None

    async def _open_shared(self, name: str, registry: Registry) -> Session:
        task = self._connecting.get(name)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._open(name, registry))
            self._connecting[name] = task
            task.add_done_callback(lambda t: self._settled(name, t))
        return await asyncio.shield(task)

    def opened(self, session: Session) -> None:
        assert session.peer_name is not None
        self.sessions.add(session)
        if session.connection.accepting:
            self.inbound[session.peer_name] = session  # a claim, checked at first use
        else:
            self.by_name.setdefault(session.peer_name, session)

    def closed(self, session: Session) -> bool:
        """Forget ``session``; True if it was the route to its peer (the peer may be gone)."""
        self.sessions.discard(session)
        peer = session.peer_name
        if peer is not None and self.inbound.get(peer) is session:
            del self.inbound[peer]
        if peer is None or self.by_name.get(peer) is not session:
            return False
        del self.by_name[peer]
        for other in self.sessions:
            if other.peer_name == peer and other.is_open and not other.connection.accepting:
                self.by_name[peer] = other
                break
        return True

    def inbound_route(self, name: str) -> Session | None:
        """The connection ``name`` opened to us, as its route: for a name no registry knows."""
        session = self.inbound.get(name)
        if session is None or not session.is_open:
            return None
        self.by_name[name] = session
        return session

    def changed(self, name: str) -> None:
        """``name`` registered or changed: a route taken on its hello alone ends."""
        self.carried.pop(name, None)
        route = self.by_name.get(name)
        if route is not None and route.connection.accepting:
            del self.by_name[name]

    def retire(self, name: str) -> None:
        """``name`` left the registry: new calls look it up again (and fail if it is gone), while
        calls already pending on its session are answered or fail there."""
        self.carried.pop(name, None)
        self.by_name.pop(name, None)

    def running_calls(self) -> list[asyncio.Task[object]]:
        """Tasks running calls that peers made to us (async functions)."""
        return [task for session in self.sessions for task in session.running.values()]

    async def close_all(self) -> None:
        """Stop connecting, close every session (flushing what is written) and wait up to 1 s."""
        for task in self._connecting.values():
            task.cancel()
        sessions = list(self.sessions)
        for session in sessions:
            session.close()
        if sessions:
            await asyncio.wait(
                [asyncio.ensure_future(s.wait_closed()) for s in sessions], timeout=1.0
            )
        self.by_name.clear()

    @property
    def peers(self) -> list[tuple[str, str]]:
        return sorted((s.peer_name or "", s.origin) for s in self.sessions if s.is_open)

    # -- internals -------------------------------------------------------------------------------

    def _settled(self, name: str, task: asyncio.Task[Session]) -> None:
        self._connecting.pop(name, None)
        if not task.cancelled():
            task.exception()  # mark retrieved: every waiter may have been cancelled

    async def _open(self, name: str, registry: Registry) -> Session:
        session = await self._look_up_and_connect(name, registry)
        metrics = self._node.metrics
        if name in self._known and metrics is not None:
            metrics.peer_reconnects += 1
        self._known.add(name)
        return session

    async def _look_up_and_connect(self, name: str, registry: Registry) -> Session:
        try:
            registration = await registry.lookup(name)
        except NameNotFound:
            route = self.inbound_route(name)
            if route is None:
                raise
            return route
        if registration.via:
            return await self._open_carrier(name, registration.via, registry)
        self.carried.pop(name, None)
        inbound = self.inbound.get(name)
        if (
            inbound is not None
            and inbound.is_open
            and registration.identity
            and inbound.peer_identity == registration.identity
        ):
            self.by_name[name] = inbound  # the lease holder's own connection, by its certificate
            return inbound
        if not registration.addresses:
            raise NameNotFound(name, f"service {name!r} is registered but accepts no connections")
        failures = []
        for url in _preferred(registration):
            try:
                return await self._connect(url, name)
            except NameNotFound:
                registry.forget(name)
                raise
            except (TransportError, PeerLost, TimeoutError) as exc:
                failures.append(f"{url}: {exc}")
        registry.forget(name)
        raise PeerLost(name, "; ".join(failures), operation="connect")

    async def _open_carrier(self, name: str, via: str, registry: Registry) -> Session:
        if via == self._node.name:
            raise NameNotFound(name, f"{name!r} is carried by this node ({via!r}), which "
                                     "delivers to it itself")
        if (await registry.lookup(via)).via:
            raise NameNotFound(name, f"{name!r} is carried by {via!r}, itself a carried name")
        route = await self._open_shared(via, registry)
        self.carried[name] = via
        return route

    async def _connect(self, url: str, name: str) -> Session:
        node = self._node
        session = node.new_session(origin=url)
        await connect_session(url, session, timeout=node.connect_timeout, tls=node.security.tls)
        try:
            async with asyncio.timeout(node.connect_timeout):
                await session.wait_open()
        except BaseException:
            session.abort()
            raise
        if session.peer_name != name:
            session.close()
            raise NameNotFound(name, f"{url} is now served by {session.peer_name!r}, not {name!r}")
        route = self.by_name.get(name)
        if route is None or route.is_closed:
            self.by_name[name] = route = session
        elif route is not session:
            session.close()  # a connection from that peer arrived first; keep one per pair
        return route


def _preferred(registration: Registration) -> list[str]:
    """Addresses in the order to try: a unix socket first when the peer is on this host."""
    local = [a for a in registration.addresses if _same_host_only(a)]
    others = [a for a in registration.addresses if not _same_host_only(a)]
    return local + others if registration.host == host_id() else others


def _same_host_only(url: str) -> bool:
    try:
        return scheme_of(url).same_host
    except ValueError:
        return False  # a scheme this version does not know: let the connect say so

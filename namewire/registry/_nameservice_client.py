"""`NameServiceClient`: the `Registry` backed by namewire's built-in name service.

One session to the name service carries calls (register, renew, lookup, ...) and, the other way,
change notices for names this client looked up. A background task renews the lease and, when the
session breaks (name service restart), reconnects with backoff and registers again. Peer-to-peer
connections of the node do not go through here and keep working meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

from ..errors import (
    AuthError,
    Forbidden,
    NameNotFound,
    NameTaken,
    NamewireError,
    PeerLost,
    RegistryUnavailable,
    RemoteError,
    TransportError,
)
from ..transport import Security, Session, connect_session
from ..wire import Call
from ._protocol import (
    EVENT_CHANGED,
    FN_DEREGISTER,
    FN_LOOKUP,
    FN_MEMBERS,
    FN_PROVIDERS,
    FN_REGISTER,
    FN_RENEW,
    FN_SERVICES,
)
from ._records import DEFAULT_LEASE_TTL, Registration, ServiceInfo, check_carried
from ._registry import Registry

__all__ = ["NameServiceClient"]

log = logging.getLogger("namewire.registry")

_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 0.5  # a restarted name service sees everyone back within ~0.75 s (jitter)


class NameServiceClient(Registry):
    """Registry client for the built-in name service at ``url``.

    ``node_name`` is the name this client says hello with. ``ttl`` is the lease asked for; the lease is
    renewed every ``ttl / 3`` seconds. ``security`` (default: `Security.from_env`): TLS for a
    tls:// name service, the shared secret.
    """

    def __init__(
        self,
        url: str,
        *,
        node_name: str,
        ttl: float = DEFAULT_LEASE_TTL,
        connect_timeout: float = 3.0,
        call_timeout: float = 5.0,
        security: Security | None = None,
    ) -> None:
        if ttl <= 0:
            raise ValueError(f"lease ttl must be positive, not {ttl}")
        self.url = url
        self.node_name = node_name
        self.ttl = ttl
        self.security = security if security is not None else Security.from_env()
        self._connect_timeout = connect_timeout
        self._call_timeout = call_timeout
        self._session: Session | None = None
        self._registration: Registration | None = None
        self._lease: str | None = None
        self._carried: dict[str, tuple[Registration, str]] = {}  # name -> (registration, lease)
        self._cache: dict[str, Registration] = {}
        self._providers: dict[str, list[str]] = {}
        self._members: dict[str, list[Registration]] = {}
        # Bumped by every change notice and reconnect. An answer is cached only if no notice came
        # while it was on its way: a notice can overtake the task that waits for the answer.
        self._epoch = 0
        self._lookups: dict[str, asyncio.Future[Registration]] = {}
        self._keeper: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closing = False

    # -- Registry ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._session = await self._connect()
        self._keeper = asyncio.get_running_loop().create_task(
            self._keep_alive(), name=f"namewire.registry({self.url})"
        )

    async def register(self, registration: Registration) -> None:
        result = await self._call(FN_REGISTER, registration.to_dict(), self.ttl)
        self._registration = registration
        self._lease = str(result["lease"])

    async def deregister(self) -> None:
        lease, self._lease, self._registration = self._lease, None, None
        self._carried.clear()  # the name service drops them with our lease
        if lease is not None and self._session is not None and self._session.is_open:
            with contextlib.suppress(NamewireError):
                await self._call(FN_DEREGISTER, lease)

    async def register_carried(self, registration: Registration) -> None:
        check_carried(registration, self._registration)
        result = await self._call(FN_REGISTER, registration.to_dict(), self.ttl)
        self._carried[registration.name] = (registration, str(result["lease"]))

    async def deregister_carried(self, name: str) -> None:
        entry = self._carried.pop(name, None)
        if entry is not None and self._session is not None and self._session.is_open:
            with contextlib.suppress(NamewireError):
                await self._call(FN_DEREGISTER, entry[1])

    async def lookup(self, name: str) -> Registration:
        cached = self._cache.get(name)
        metrics = self.metrics
        if metrics is not None:
            metrics.registry_lookups += 1
            metrics.registry_cache_hits += cached is not None
        if cached is not None:
            return cached
        # Concurrent look-ups of one name share one request.
        shared = self._lookups.get(name)
        if shared is None:
            shared = asyncio.ensure_future(self._lookup(name))
            self._lookups[name] = shared
            shared.add_done_callback(lambda done: self._lookup_settled(name, done))
        return await asyncio.shield(shared)

    def _lookup_settled(self, name: str, shared: asyncio.Future[Registration]) -> None:
        self._lookups.pop(name, None)
        if not shared.cancelled():
            # Mark retrieved: every waiter may have been cancelled (shield then drops its own
            # callback), and the NameNotFound would be logged as "never retrieved" when collected.
            shared.exception()

    async def providers(self, func: str) -> list[str]:
        cached = self._providers.get(func)
        if cached is None:
            epoch = self._epoch
            names = await self._call(FN_PROVIDERS, func)
            cached = sorted(str(n) for n in names)
            if epoch == self._epoch:
                self._providers[func] = cached
        return list(cached)

    async def members(self, group: str) -> list[Registration]:
        cached = self._members.get(group)
        if cached is None:
            epoch = self._epoch
            rows = await self._call(FN_MEMBERS, group)
            cached = [Registration.from_dict(r) for r in rows]
            if epoch == self._epoch:
                self._members[group] = cached
        return list(cached)

    async def services(self) -> list[ServiceInfo]:
        rows = await self._call(FN_SERVICES)
        return [
            ServiceInfo(Registration.from_dict(r["registration"]), float(r["lease_age"]),
                        float(r["ttl"]),
                        float(r["expires_in"]) if r.get("expires_in") is not None else None)
            for r in rows
        ]

    def forget(self, name: str) -> None:
        self._cache.pop(name, None)

    async def close(self) -> None:
        self._closing = True
        await self.deregister()
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.cancel()
            await asyncio.wait([keeper])  # never raises what the keeper met: that was logged
            if not keeper.cancelled() and keeper.exception() is not None:
                log.error("lease keeper of %r had stopped", self.node_name,
                          exc_info=keeper.exception())
        session, self._session = self._session, None  # no cycle through it once closed
        if session is not None:
            session.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(session.wait_closed(), 1.0)

    # -- SessionHandler (the name service's side of our session) ------------------------------------

    def session_opened(self, session: Session) -> None:
        pass

    def message_received(self, session: Session, payload: Any, size: int) -> None:
        session.message_consumed(size)  # notices are handled at once: no mailbox
        if isinstance(payload, dict) and payload.get("event") == EVENT_CHANGED:
            self._epoch += 1
            name = str(payload.get("name"))
            self._cache.pop(name, None)
            if payload.get("left") is True and self.name_left is not None:
                self.name_left(name)
            elif payload.get("left") is not True and self.name_changed is not None:
                self.name_changed(name)
            for func in payload.get("functions") or ():
                self._providers.pop(str(func), None)
            group = payload.get("group")
            if group:
                self._members.pop(str(group), None)

    def call_received(self, session: Session, call: Call) -> None:
        session.reply_error(call.id, "no_such_function", "NoSuchFunction",
                            f"registry client {self.node_name!r} serves no functions")

    def cancel_received(self, session: Session, call_id: int) -> None:
        pass

    def session_closed(self, session: Session, reason: BaseException | None) -> None:
        if session is not self._session:
            return  # one we gave up on while connecting: the current session, if any, is fine
        if not self._closing:
            log.warning("lost the name service at %s (%s); reconnecting", self.url,
                        reason or "closed")
        self._epoch += 1
        self._cache.clear()
        self._providers.clear()
        self._members.clear()
        self._wake.set()

    # -- internals ---------------------------------------------------------------------------------

    async def _connect(self) -> Session:
        """A new session to the name service, its hello received.

        Whatever fails once the connection is made (no hello in time, a closed connection, a
        cancelled caller), the connection is aborted before the error leaves: nothing is left open.
        """
        session: Session | None = None
        try:
            security = self.security
            session = Session(
                self.node_name,
                self,
                origin=self.url,
                auth=security.authenticator(self.node_name, accepting=False),
                handshake_timeout=security.handshake_timeout,
            )
            await connect_session(
                self.url, session, timeout=self._connect_timeout, tls=security.tls
            )
            async with asyncio.timeout(self._connect_timeout):
                await session.wait_open()
        except BaseException as exc:
            if session is not None:
                session.abort()
            if not isinstance(exc, (TransportError, PeerLost, TimeoutError)):
                raise
            why = str(exc) or f"no answer within {self._connect_timeout}s"
            raise RegistryUnavailable(
                f"cannot reach the name service at {self.url}: {why} "
                "(start one with `namewire nameservice`)"
            ) from None
        return session

    async def _call(self, func: str, *args: Any) -> Any:
        session = self._session
        if session is None or session.is_closed:
            raise RegistryUnavailable(f"name service at {self.url} unreachable (reconnecting)")
        try:
            return await session.call(func, args, self._call_timeout)
        except RemoteError as exc:
            if exc.remote_type == "NameTaken":
                name = str(args[0].get("name", "")) if func == FN_REGISTER else ""
                raise NameTaken(name, reason=exc.remote_message) from None
            if exc.remote_type == "Forbidden":
                raise Forbidden(exc.remote_message.removeprefix("forbidden: ")) from None
            raise
        except (PeerLost, TimeoutError) as exc:
            raise RegistryUnavailable(f"name service at {self.url}: {exc}") from None

    async def _lookup(self, name: str) -> Registration:
        epoch = self._epoch
        data = await self._call(FN_LOOKUP, name)
        if data is None:
            log.debug("%s: looked up %r: no such service", self.node_name, name)
            raise NameNotFound(name, registry=self.url)
        registration = Registration.from_dict(data)
        log.debug("%s: looked up %r: %s", self.node_name, name, ", ".join(registration.addresses))
        if epoch == self._epoch:
            self._cache[name] = registration
        return registration

    async def _keep_alive(self) -> None:
        """Renew the lease every ttl/3; after losing the name service, reconnect and re-register.

        Runs until `close`: a failure is logged and the keeper carries on, since a keeper that died
        would let the lease lapse without a word.
        """
        while True:
            try:
                await self._keep_alive_until_failure()
            except Exception:
                log.exception("lease keeper of %r (name service %s) failed; carrying on",
                              self.node_name, self.url)
                await asyncio.sleep(self.ttl / 3)

    async def _keep_alive_until_failure(self) -> None:
        backoff = _BACKOFF_FIRST
        while True:
            session = self._session
            if session is None or session.is_closed:
                try:
                    self._session = await self._connect()
                except (RegistryUnavailable, AuthError) as exc:
                    if isinstance(exc, AuthError):
                        log.warning("name service at %s: %s", self.url, exc)
                    await asyncio.sleep(backoff * (0.5 + random.random()))
                    backoff = min(backoff * 2, _BACKOFF_MAX)
                    continue
                backoff = _BACKOFF_FIRST
                log.info("%s: reconnected to the name service at %s", self.node_name, self.url)
                if self.metrics is not None:
                    self.metrics.registry_reconnects += 1
                await self._register_again()
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.ttl / 3):
                    await self._wake.wait()
            if self._registration is not None and session.is_open:
                if self._lease is None:
                    await self._register_again()
                else:
                    await self._renew()

    async def _renew(self) -> None:
        try:
            alive = await self._call(FN_RENEW, self._lease)
        except RegistryUnavailable:
            return  # the keeper reconnects
        except NamewireError as exc:  # RemoteError, NoSuchFunction...: the name service refused
            log.warning("renewing the lease of %r at %s failed (%s); registering again",
                        self.node_name, self.url, exc)
            self._lease_lost()
            await self._register_again()
            return
        if not alive:
            log.warning("lease of %r expired at the name service; registering again",
                        self.node_name)
            self._lease_lost()
            await self._register_again()
        elif self.metrics is not None:
            self.metrics.lease_renewals += 1

    def _lease_lost(self) -> None:
        if self.metrics is not None:
            self.metrics.lease_losses += 1

    async def _register_again(self) -> None:
        registration = self._registration
        if registration is None:
            return
        try:
            await self.register(registration)
        except NameTaken as exc:
            # Someone took the name while we were away; the keeper tries again each period.
            self._lease = None
            log.error("cannot register %r again: %s", self.node_name, exc)
        except RegistryUnavailable:
            pass
        except NamewireError as exc:
            self._lease = None  # the keeper tries again each period
            log.warning("registering %r again at %s failed (%s); trying again in %.3gs",
                        self.node_name, self.url, exc, self.ttl / 3)
        else:
            await self._carry_again()

    async def _carry_again(self) -> None:
        """Our names went with our lease: register each again (one that fails is dropped)."""
        for name, (carried, _) in list(self._carried.items()):
            try:
                await self.register_carried(carried)
            except RegistryUnavailable:
                return  # the keeper reconnects and registers everything again
            except (NamewireError, ValueError) as exc:
                if self._carried.pop(name, None) is not None:
                    log.error("%s: cannot register carried name %r again: %s", self.node_name,
                              name, exc)

"""`NameService`: the built-in name service, itself a namewire node (as in the seed).

It keeps name -> registration and function -> providers. A registration lives under a lease: the
registering node renews it every ttl/3; a lease not renewed within its ttl expires. A lease is also
released at once when the session that took it closes (process exit, kill -9), so a restarted
service gets its name back without waiting for the ttl. Nodes that looked a name up (or asked for
providers of one of its functions) are told when it changes, so their caches drop it at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ..errors import Forbidden, NameTaken
from ..node import Caller, FailureLog, Node
from ..registry import DEFAULT_NAMESERVICE, Registration
from ..registry._protocol import (
    EVENT_CHANGED,
    FN_DEREGISTER,
    FN_LOOKUP,
    FN_MEMBERS,
    FN_PROVIDERS,
    FN_REGISTER,
    FN_RENEW,
    FN_SERVICES,
    NAMESERVICE_NAME,
)
from ..registry._records import check_carried
from ..transport import Security, Session
from ._validation import check_registration

__all__ = ["Lease", "NameService"]

log = logging.getLogger("namewire.nameservice")

MIN_TTL = 0.2
MAX_TTL = 3600.0


@dataclass(slots=True)
class Lease:
    id: str
    registration: Registration
    session: Session
    ttl: float
    granted: float
    expires: float


class NameService:
    """The name service. ``async with NameService().serve("tcp://127.0.0.1:8010"):`` runs it.

    ``security`` (default: `Security.from_env`): TLS for tls:// listeners, the shared secret
    every node must prove it holds, and the policy file's ``register`` rules.
    """

    def __init__(self, *, sweep_interval: float = 0.05, security: Security | None = None) -> None:
        security = security if security is not None else Security.from_env()
        # The policy's register rules are checked here; its call rules are for services: the
        # name service's own functions stay open to every member.
        self._policy = security.rules
        self.node = Node(NAMESERVICE_NAME, call_timeout=None,
                         security=dataclasses.replace(security, policy=None))
        # A taken or forbidden name is an answer, logged in one line.
        self.node.failures = FailureLog(refusals=(NameTaken, Forbidden))
        self._leases: dict[str, Lease] = {}  # by service name
        self._lease_ids: dict[str, Lease] = {}
        self._carried: dict[str, set[str]] = {}  # carrier name -> the names it carries
        self._name_watchers: dict[str, set[Session]] = {}
        self._func_watchers: dict[str, set[Session]] = {}
        self._group_watchers: dict[str, set[Session]] = {}
        self._tracked: set[Session] = set()
        self._sweep_interval = sweep_interval
        for fn, name in (
            (self._register, FN_REGISTER),
            (self._renew, FN_RENEW),
            (self._deregister, FN_DEREGISTER),
            (self._lookup, FN_LOOKUP),
            (self._members, FN_MEMBERS),
            (self._providers, FN_PROVIDERS),
            (self._services, FN_SERVICES),
        ):
            self.node.functions.add(fn, name=name, with_caller=True)

    @contextlib.asynccontextmanager
    async def serve(self, listen: str = DEFAULT_NAMESERVICE) -> AsyncIterator[NameService]:
        async with self.node.serve(listen=listen, unix=False, standalone=True, grace=1.0):
            sweeper = asyncio.get_running_loop().create_task(self._sweep())
            try:
                yield self
            finally:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper

    @property
    def address(self) -> str:
        return self.node.addresses[0]

    # -- remote functions ------------------------------------------------------------------------

    def _register(self, caller: Caller, data: dict[str, Any], ttl: float) -> dict[str, Any]:
        session = _session_of(caller)
        # The identity is the one the connection proved (its certificate), never what it claims.
        registration = dataclasses.replace(Registration.from_dict(data),
                                           identity=session.peer_identity or "")
        check_registration(registration)
        policy = self._policy
        if policy is not None and not policy.may_register(session.peer_identity, registration.name):
            raise Forbidden(f"{policy.describe(session.peer_identity)} may not register "
                            f"{registration.name!r} (policy file {policy.source})")
        ttl = min(max(float(ttl), MIN_TTL), MAX_TTL)
        now = time.monotonic()
        if registration.via:
            # Only the carrier's own connection may register a name via it; the name then
            # lives as long as the carrier's lease (it never expires on its own).
            carrier = self._leases.get(registration.via)
            check_carried(registration, carrier.registration
                          if carrier is not None and carrier.session is session else None)
        held = self._leases.get(registration.name)
        if held is not None and held.session is not session and held.expires > now:
            holder = held.registration
            raise NameTaken(holder.name, addresses=holder.addresses,
                            host=holder.host.split("/")[0], pid=holder.pid)
        if held is not None:
            self._drop(held, notify=False)
        lease = Lease(secrets.token_hex(8), registration, session, ttl, now,
                      math.inf if registration.via else now + ttl)
        self._leases[registration.name] = lease
        self._lease_ids[lease.id] = lease
        if registration.via:
            self._carried.setdefault(registration.via, set()).add(registration.name)
        self._track(session)
        old_functions = held.registration.functions if held is not None else ()
        old_group = held.registration.group if held is not None else ""
        if old_group and old_group != registration.group:
            self._notify(registration.name, set(old_functions), group=old_group)
        self._notify(registration.name, set(old_functions) | set(registration.functions),
                     group=registration.group)
        log.info("registered %r %s", registration.name, f"via {registration.via!r}"
                 if registration.via else "at " + ", ".join(registration.addresses))
        return {"lease": lease.id, "ttl": ttl}

    def _renew(self, caller: Caller, lease_id: str) -> bool:
        lease = self._lease_ids.get(lease_id)
        now = time.monotonic()
        if lease is None or lease.expires <= now:
            return False
        if lease.session is not _session_of(caller):
            log.warning("refused to renew the lease of %r for %r (%s): not the lease holder",
                        lease.registration.name, caller.name, _session_of(caller).origin)
            return False
        lease.expires = now + lease.ttl
        return True

    def _deregister(self, caller: Caller, lease_id: str) -> None:
        lease = self._lease_ids.get(lease_id)
        if lease is not None and lease.session is not _session_of(caller):
            log.warning("refused to deregister %r for %r (%s): not the lease holder",
                        lease.registration.name, caller.name, _session_of(caller).origin)
            raise PermissionError(f"the lease of {lease.registration.name!r} is not yours")
        if lease is not None:
            log.info("deregistered %r", lease.registration.name)
            self._drop(lease)

    def _lookup(self, caller: Caller, name: str) -> dict[str, Any] | None:
        self._watch(self._name_watchers, name, _session_of(caller))
        lease = self._leases.get(name)
        return lease.registration.to_dict() if lease is not None else None

    def _members(self, caller: Caller, group: str) -> list[dict[str, Any]]:
        self._watch(self._group_watchers, group, _session_of(caller))
        return [lease.registration.to_dict() for _, lease in sorted(self._leases.items())
                if lease.registration.group == group]

    def _providers(self, caller: Caller, func: str) -> list[str]:
        self._watch(self._func_watchers, func, _session_of(caller))
        return sorted(n for n, lease in self._leases.items()
                      if func in lease.registration.functions)

    def _services(self, caller: Caller) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [
            {"registration": lease.registration.to_dict(), "lease_age": now - lease.granted,
             "ttl": lease.ttl, "expires_in": max(0.0, self._expires(lease) - now)}
            for _, lease in sorted(self._leases.items())
        ]

    def _expires(self, lease: Lease) -> float:
        """When ``lease`` ends unless renewed: a carried name's is its carrier's."""
        carrier = self._leases.get(lease.registration.via) if lease.registration.via else None
        return carrier.expires if carrier is not None else lease.expires

    # -- bookkeeping -----------------------------------------------------------------------------

    def _drop(self, lease: Lease, *, notify: bool = True) -> None:
        """Forget ``lease``; ``notify``: its name left (not replaced), and so do those it carries."""
        self._lease_ids.pop(lease.id, None)
        name, via = lease.registration.name, lease.registration.via
        if self._leases.get(name) is lease:
            del self._leases[name]
            if via and via in self._carried:
                self._carried[via].discard(name)
                if not self._carried[via]:
                    del self._carried[via]
            if notify:
                self._notify(name, set(lease.registration.functions), left=True,
                             group=lease.registration.group)
                for carried in sorted(self._carried.pop(name, ())):
                    held = self._leases.get(carried)
                    if held is not None and held.session is lease.session:
                        self._drop(held)

    def _notify(self, name: str, functions: set[str], *, left: bool = False,
                group: str = "") -> None:
        sessions = set(self._name_watchers.get(name, ()))
        for func in functions:
            sessions |= self._func_watchers.get(func, set())
        if group:
            sessions |= self._group_watchers.get(group, set())
        notice = {
            "event": EVENT_CHANGED, "name": name, "functions": sorted(functions), "left": left,
            "group": group,
        }
        for session in sessions:
            session.push(notice)

    def _watch(self, table: dict[str, set[Session]], key: str, session: Session) -> None:
        table.setdefault(key, set()).add(session)
        self._track(session)

    def _track(self, session: Session) -> None:
        """Release the session's leases and watches when it closes."""
        if session in self._tracked:
            return
        self._tracked.add(session)
        closed = asyncio.ensure_future(session.wait_closed())
        closed.add_done_callback(lambda _: self._session_gone(session))

    def _session_gone(self, session: Session) -> None:
        self._tracked.discard(session)
        for table in (self._name_watchers, self._func_watchers, self._group_watchers):
            for key in [k for k, s in table.items() if session in s]:
                table[key].discard(session)
                if not table[key]:
                    del table[key]
        for lease in [le for le in self._leases.values() if le.session is session]:
            log.info("%r left (connection closed)", lease.registration.name)
            self._drop(lease)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval)
            now = time.monotonic()
            for lease in [le for le in self._leases.values() if le.expires <= now]:
                log.info("lease of %r expired after %.1fs", lease.registration.name, lease.ttl)
                self._drop(lease)


def _session_of(caller: Caller) -> Session:
    """The caller's connection: leases and notices are bound to it."""
    if caller.session is None:
        raise ValueError("the name service's functions are for other nodes, not for itself")
    return caller.session


async def serve_forever(
    listen: str = DEFAULT_NAMESERVICE,
    *,
    ready: asyncio.Event | None = None,
    security: Security | None = None,
) -> None:
    """Run a name service until cancelled (what ``namewire nameservice`` does)."""
    async with NameService(security=security).serve(listen) as service:
        log.info("name service listening on %s", service.address)
        if ready is not None:
            ready.set()
        await asyncio.Event().wait()



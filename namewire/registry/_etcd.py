"""`EtcdRegistry`: the `Registry` backed by an etcd v3 cluster (``etcd://h1:2379,h2:2379``).

Layout: one key per name, ``{prefix}/names/{name}``, whose value is the registration as JSON,
attached to the lease of the process that holds it.

- **Unique names.** A name is taken by one transaction that puts the key only if its create
  revision is 0 (it does not exist); otherwise `NameTaken` names the holder. The key's create
  revision is the registration's epoch: a name that left and came back has a new one.
- **Leases.** Granted with the TTL asked for (rounded up to whole seconds, etcd's unit) and renewed
  every TTL/3. Locally the lease is taken to end TTL after the last renewal that etcd answered was
  *sent*, never later than etcd ends it; from that instant the registry tells its owner that it no
  longer holds its name (`holding_changed`), so two processes never both answer as one name.
  A lost lease is replaced by a new one and the name claimed again; a clean stop revokes the lease,
  so watchers see the name leave at once.
- **The view.** Look-ups, providers and listings are answered from a local copy of every key
  under the prefix: one range read at start, then one watch from the revision after it. A watch
  whose revision was compacted away reads the range again. A name that leaves, or comes back with
  another epoch, is reported through `name_left`, the same hook the built-in name service's
  change notices drive.
- **Carried names** (`register_carried`) are keys of their own under our lease: they leave with
  it, and are claimed again with our name under a new one.
- **etcd unreachable.** The view is kept and answered from; `degraded` says why, and the change
  is logged once each way. Names are never dropped on our side for want of etcd.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import time
from typing import NamedTuple

from ..errors import NameNotFound, NameTaken, RegistryUnavailable
from ._etcd_gateway import EtcdGateway, KeyValue, WatchCompacted, prefix_end
from ._etcd_url import parse_etcd_url
from ._records import DEFAULT_LEASE_TTL, Registration, ServiceInfo, check_carried
from ._registry import Registry

__all__ = ["EtcdRegistry"]

log = logging.getLogger("namewire.registry.etcd")

_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 1.0


class _Entry(NamedTuple):
    registration: Registration
    epoch: int  # the key's create revision
    lease: int
    since: float  # wall-clock time the holder claimed the name
    ttl: float  # of the holder's lease


def _value(registration: Registration, since: float, ttl: int) -> bytes:
    """What the key holds: the registration, plus when and for how long it was claimed."""
    return json.dumps({**registration.to_dict(), "since": since, "ttl": ttl}).encode()


class EtcdRegistry(Registry):
    """Registry client for the etcd cluster at ``url``; see the module docstring.

    ``tls`` is set for ``etcds://``. ``ttl`` is the lease asked for (etcd grants whole seconds,
    at least its own minimum, about 2 s with default settings).
    """

    def __init__(
        self, url: str, *, node_name: str, ttl: float = DEFAULT_LEASE_TTL, tls: bool = False
    ) -> None:
        if ttl <= 0:
            raise ValueError(f"lease ttl must be positive, not {ttl}")
        self.url = url
        self.node_name = node_name
        self.target = parse_etcd_url(url, tls=tls)
        self.ttl = ttl
        self._gateway = EtcdGateway(self.target, timeout=max(0.5, min(ttl / 3, 2.0)))
        self._prefix = f"{self.target.prefix}/names/".encode()
        self._view: dict[str, _Entry] = {}
        self._revision = 0
        self._registration: Registration | None = None
        self._lease: int | None = None
        self._carried: dict[str, Registration] = {}
        self._granted = math.ceil(ttl)
        self._since: float | None = None  # when our current lease claimed the name (wall clock)
        self._lease_ends = 0.0  # loop time
        self._expiry: asyncio.TimerHandle | None = None
        self._holding = False
        self._claiming = asyncio.Lock()
        self._faults: dict[str, str] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._watching = False  # the watch stream is open and answered
        self._keeper: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closing = False

    # -- Registry ------------------------------------------------------------------------------

    @property
    def degraded(self) -> str | None:
        return "; ".join(self._faults.values()) or None

    async def start(self) -> None:
        await self._read_view()
        loop = asyncio.get_running_loop()
        self._watcher = loop.create_task(self._watch(), name=f"namewire.etcd-watch({self.url})")
        self._keeper = loop.create_task(self._keep(), name=f"namewire.etcd-lease({self.url})")

    async def register(self, registration: Registration) -> None:
        try:
            json.dumps(registration.to_dict())
        except (TypeError, ValueError) as exc:
            raise ValueError(f"registration of {registration.name!r} cannot be stored in etcd: "
                             f"its metadata must be JSON ({exc})") from None
        async with self._claiming:
            await self._claim(registration)
        self._registration = registration

    async def deregister(self) -> None:
        async with self._claiming:  # not while the keeper claims the name again
            lease, self._lease, self._registration = self._lease, None, None
            self._carried.clear()  # their keys go with the lease
            self._holding = False
            if self._expiry is not None:
                self._expiry.cancel()
        if lease is None:
            return
        try:
            await self._gateway.revoke(lease)
        except RegistryUnavailable as exc:
            log.warning("could not revoke the lease of %r (%s); its name leaves when the lease "
                        "ends, within %ss", self.node_name, exc, self._granted)

    async def register_carried(self, registration: Registration) -> None:
        check_carried(registration, self._registration)
        async with self._claiming:
            if self._lease is None:
                raise RegistryUnavailable(f"etcd at {self.url}: {self.node_name!r} holds no lease "
                                          "now (claiming its name again)")
            await self._claim_carried(registration, self._lease)
            self._carried[registration.name] = registration

    async def deregister_carried(self, name: str) -> None:
        async with self._claiming:
            lease = self._lease
            if self._carried.pop(name, None) is None or lease is None:
                return
            try:
                await self._gateway.delete(self._prefix + name.encode(), lease)
            except RegistryUnavailable as exc:
                log.warning("could not drop carried name %r of %r (%s); it leaves with our "
                            "lease", name, self.node_name, exc)

    async def lookup(self, name: str) -> Registration:
        entry = self._view.get(name)
        if entry is not None:
            return entry.registration
        if not self._faults:
            # Registered a moment ago, and its watch event is still on its way?
            with contextlib.suppress(RegistryUnavailable):
                _, kvs = await self._gateway.range(self._prefix + name.encode())
                for kv in kvs:
                    entry = self._entry(kv)
                    if entry is not None:
                        return entry.registration
        raise NameNotFound(name, registry=self.url)

    async def providers(self, func: str) -> list[str]:
        return sorted(n for n, e in self._view.items() if func in e.registration.functions)

    async def members(self, group: str) -> list[Registration]:
        # From the view, as look-ups are: the default (on `services`) would ask etcd for the
        # time to live of every lease, on a path that group routing takes once a second.
        return sorted((e.registration for e in self._view.values() if e.registration.group == group),
                      key=lambda r: r.name)

    async def services(self) -> list[ServiceInfo]:
        entries = sorted(self._view.values(), key=lambda e: e.registration.name)

        now = time.time()

        async def info(entry: _Entry) -> ServiceInfo:
            # Registered for: from the holder's clock (stored with the key); expires in: etcd's.
            age = max(0.0, now - entry.since)
            try:
                left, _ = await self._gateway.time_to_live(entry.lease)
            except RegistryUnavailable:
                return ServiceInfo(entry.registration, age, entry.ttl)
            return ServiceInfo(entry.registration, age, entry.ttl, float(max(0, left)))

        return list(await asyncio.gather(*(info(e) for e in entries)))

    def forget(self, name: str) -> None:
        pass  # the view follows etcd's own changes; a broken connection says nothing new

    async def close(self) -> None:
        self._closing = True
        await self.deregister()
        for task in (self._keeper, self._watcher):
            if task is not None:
                task.cancel()
                await asyncio.wait([task])
        self._keeper = self._watcher = None
        await self._gateway.close()

    # -- claiming the name ---------------------------------------------------------------------

    async def _claim(self, registration: Registration) -> None:
        """Hold ``registration.name`` under our lease (a new one if we have none)."""
        fresh = self._lease is None
        if self._lease is None:
            sent = asyncio.get_running_loop().time()
            lease, granted = await self._gateway.grant(math.ceil(self.ttl))
            self._lease, self._granted = lease, granted
            self._renewed(sent, granted)
        lease = self._lease
        key = self._prefix + registration.name.encode()
        if fresh or self._since is None:
            self._since = time.time()
        value = _value(registration, self._since, self._granted)
        done, holder = await self._gateway.create(key, value, lease)
        if not done and holder is not None and holder.lease == lease:
            done, holder = await self._gateway.update(key, value, lease)  # ours: a change
        if not done:
            if fresh:  # nobody needs the lease we just took
                self._lease = None
                with contextlib.suppress(RegistryUnavailable):
                    await self._gateway.revoke(lease)
            raise _held_by(registration.name, holder)
        if fresh or not self._holding:
            await self._carry_again(lease)
        if not self._holding:
            self._holding = True
            if self._registration is not None:  # a claim again, after a loss
                log.warning("%r holds its name again (etcd lease %x)", registration.name, lease)
                if self.holding_changed is not None:
                    self.holding_changed(None)

    async def _claim_carried(self, registration: Registration, lease: int) -> None:
        key = self._prefix + registration.name.encode()
        value = _value(registration, time.time(), self._granted)
        done, holder = await self._gateway.create(key, value, lease)
        if not done and holder is not None and holder.lease == lease:
            done, holder = await self._gateway.update(key, value, lease)
        if not done:
            raise _held_by(registration.name, holder)

    async def _carry_again(self, lease: int) -> None:
        """Our carried names went with our last lease: claim each under the new one."""
        for name, carried in list(self._carried.items()):
            try:
                await self._claim_carried(carried, lease)
            except NameTaken as exc:
                del self._carried[name]
                log.error("%s: cannot claim carried name %r again: %s", self.node_name, name, exc)

    def _renewed(self, sent: float, ttl: int) -> None:
        """etcd renewed our lease for ``ttl`` s on a request sent at ``sent`` (loop time)."""
        self._lease_ends = sent + ttl
        if self._expiry is not None:
            self._expiry.cancel()
        self._expiry = asyncio.get_running_loop().call_at(self._lease_ends, self._lease_may_end)

    def _lease_may_end(self) -> None:
        self._lost(f"no renewal of its etcd lease answered within its {self._granted}s")

    def _lost(self, reason: str) -> None:
        """Our lease ended, or may have: stop vouching for our name until it is claimed again."""
        if not self._holding or self._registration is None:
            return
        self._holding = False
        log.warning("%r stops answering under its name: %s; claiming it again",
                    self._registration.name, reason)
        if self.holding_changed is not None:
            self.holding_changed(reason)
        self._wake.set()

    async def _keep(self) -> None:
        """Every TTL/3: renew the lease (or claim the name again); probe etcd when unregistered.

        After a failure, try again soon (backing off to TTL/3): a renewal that failed during a
        leader election leaves less than a TTL to get one through, and waiting a whole period
        would leave room for only one more try.
        """
        retry = 0.0
        while True:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(retry or self._granted / 3):
                    await self._wake.wait()
            try:
                async with self._claiming:
                    await self._keep_once()
            except RegistryUnavailable as exc:
                retry = min(max(retry * 2, _BACKOFF_FIRST), self._granted / 3)
                self._fault("lease", str(exc))
                if self._watching:
                    self._restart_watch()  # its member may be the one cut off
                continue
            except NameTaken as exc:
                self._fault("lease", "")
                log.error("cannot claim %r again: %s", self.node_name, exc)
            except Exception:
                log.exception("lease keeper of %r (etcd %s) failed; carrying on",
                              self.node_name, self.url)
            else:
                self._fault("lease", "")
            retry = 0.0

    async def _keep_once(self) -> None:
        registration, lease = self._registration, self._lease
        period = self._granted / 3
        if registration is None:
            await self._gateway.probe(timeout=period)
            return
        if lease is not None:
            sent = asyncio.get_running_loop().time()
            ttl = await self._gateway.keep_alive(lease, timeout=period)
            if lease != self._lease:
                return  # deregistered or replaced meanwhile
            if ttl > 0:
                self._renewed(sent, ttl)
                if self._holding:
                    return
            else:
                self._lease = None
                self._lost(f"etcd lease {lease:x} has ended")
        await self._claim(registration)

    # -- the view ------------------------------------------------------------------------------

    async def _read_view(self) -> None:
        """Read every name (start, and after the watch's revision was compacted)."""
        revision, kvs = await self._gateway.range(self._prefix, prefix_end(self._prefix))
        view = {}
        for kv in kvs:
            entry = self._entry(kv)
            if entry is not None:
                view[entry.registration.name] = entry
        old, self._view, self._revision = self._view, view, revision
        for name, entry in old.items():
            now = view.get(name)
            if now is None or now.epoch != entry.epoch:
                self._left(name, entry)

    async def _watch(self) -> None:
        backoff = _BACKOFF_FIRST
        while True:
            endpoint = self._gateway.endpoint
            try:
                async for _, events in self._gateway.watch(self._prefix, self._revision + 1,
                                                           endpoint):
                    if not self._watching:
                        self._watching = True
                        self._fault("watch", "")
                        backoff = _BACKOFF_FIRST
                    self._apply(events)
            except WatchCompacted as exc:
                log.info("etcd compacted to revision %d past our view's %d; reading it again",
                         exc.revision, self._revision)
                with contextlib.suppress(RegistryUnavailable):
                    await self._read_view()
                    continue
            except RegistryUnavailable as exc:
                self._fault("watch", str(exc))
                if self._gateway.endpoint == endpoint:
                    self._gateway.rotate()
            except Exception as exc:  # a garbled answer, say: a watcher that died would go stale
                log.exception("etcd watch of %r at %s failed; watching again", self.node_name,
                              endpoint)
                self._fault("watch", f"watch at {endpoint} failed: {exc!r}")
            finally:
                self._watching = False
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, _BACKOFF_MAX)

    def _restart_watch(self) -> None:
        if self._watcher is not None and not self._closing:
            self._watcher.cancel()
            self._watcher = asyncio.get_running_loop().create_task(
                self._watch(), name=f"namewire.etcd-watch({self.url})"
            )

    def _apply(self, events: list[dict[str, object]]) -> None:
        for event in events:
            kv = event["kv"]
            assert isinstance(kv, KeyValue)
            self._revision = max(self._revision, kv.mod_revision)
            name = kv.key[len(self._prefix):].decode(errors="replace")
            if event["type"] == "DELETE":
                old = self._view.pop(name, None)
                if old is not None:
                    self._left(name, old)
                continue
            entry = self._entry(kv)
            if entry is None:
                continue
            old = self._view.get(name)
            self._view[name] = entry
            if old is not None and old.epoch != entry.epoch:
                self._left(name, old)  # routes to the older epoch's holder are dropped

    def _left(self, name: str, entry: _Entry) -> None:
        if self.name_left is not None:
            self.name_left(name)
        if entry.lease == self._lease and self._lease is not None and not entry.registration.via:
            self._lease = None  # our key is gone: the lease was revoked or it ended
            self._lost(f"its etcd key left (epoch {entry.epoch})")

    def _entry(self, kv: KeyValue) -> _Entry | None:
        try:
            data = json.loads(kv.value)
            registration = Registration.from_dict(data)
            since, ttl = float(data.get("since", 0.0)), float(data.get("ttl", 0.0))
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning("etcd key %r is not a namewire registration (%s); ignored", kv.key, exc)
            return None
        return _Entry(registration, kv.create_revision, kv.lease, since, ttl)

    def _fault(self, part: str, reason: str) -> None:
        """Record (``reason``) or clear (``""``) a fault; log when the registry degrades or heals."""
        before = self.degraded
        if reason:
            self._faults[part] = reason
        else:
            self._faults.pop(part, None)
        after = self.degraded
        if before is None and after is not None:
            log.warning("etcd registry of %r degraded: %s; answering from the last view "
                        "(%d names)", self.node_name, after, len(self._view))
        elif before is not None and after is None and not self._closing:
            log.warning("etcd registry of %r no longer degraded: etcd at %s answers",
                        self.node_name, self._gateway.endpoint)


def _held_by(name: str, holder: KeyValue | None) -> NameTaken:
    """`NameTaken` naming the holder as its stored registration describes it."""
    if holder is None:
        return NameTaken(name)
    try:
        held = Registration.from_dict(json.loads(holder.value))
    except ValueError:
        return NameTaken(
            name,
            reason=f"name {name!r} is held by a live service (etcd lease {holder.lease:x}, "
            f"epoch {holder.create_revision})",
        )
    return NameTaken(name, addresses=held.addresses, host=held.host, pid=held.pid)
"""The `Registry` interface every backend implements (built-in name service, etcd)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from ..runtime._metrics import Metrics
from ._records import Registration, ServiceInfo

__all__ = ["Registry"]


class Registry(ABC):
    """Where a node registers itself and resolves others.

    A registry keeps the node's registration alive (lease renewals, re-registration after the
    registry restarts) from `register` until `deregister` or `close`. Look-ups may be cached; the
    backend drops cached entries when the registry reports a change.
    """

    name_left: Callable[[str], None] | None = None
    """Called with a name when the registry reports that it left (its lease ended or was given
    up), so that its owner stops sending it new calls at once."""

    metrics: Metrics | None = None
    """Where the backend counts look-ups, cache hits, lease renewals and losses and reconnects
    (the owning node's `Metrics`; None: not counted)."""

    holding_changed: Callable[[str | None], None] | None = None
    """Called with a reason when the registry can no longer vouch that we hold our own name (our
    lease may have ended: another process may take the name), and with None once we hold it
    again. The node refuses calls in between. The built-in name service does not call it: its
    lease lives as long as the session to it, and a restart of the name service is not a reason
    to stop serving."""

    @property
    def degraded(self) -> str | None:
        """Why the registry answers from its last view instead of a live one (None: it does not)."""
        return None

    name_changed: Callable[[str], None] | None = None
    """Called with a name when the registry reports it registered or changed: a route its owner
    took on trust while the name was unregistered (a connection that said hello with it) ends."""

    @abstractmethod
    async def start(self) -> None:
        """Connect; raise `RegistryUnavailable` naming the address if that fails."""

    @abstractmethod
    async def register(self, registration: Registration) -> None:
        """Register and keep the registration alive; raise `NameTaken` if a live process has it."""

    @abstractmethod
    async def deregister(self) -> None:
        """Remove our registration now (clean shutdown), and every name we carry with it."""

    @abstractmethod
    async def register_carried(self, registration: Registration) -> None:
        """Register a name this node carries (``registration.via`` is our registered name).

        The name lives under our own lease: it leaves when `deregister_carried` drops it, or with
        our own registration (lease end, deregister, disconnect), and is registered again with
        ours. ValueError unless we are registered under ``via``, and the registration has no
        addresses or functions; `NameTaken` if a live service holds the name.
        """

    @abstractmethod
    async def deregister_carried(self, name: str) -> None:
        """Drop the carried ``name`` now; nothing if we do not carry it."""

    @abstractmethod
    async def lookup(self, name: str) -> Registration:
        """The live registration of ``name``; raise `NameNotFound`."""

    @abstractmethod
    async def providers(self, func: str) -> list[str]:
        """Names of the live services that provide ``func`` (sorted)."""

    @abstractmethod
    async def services(self) -> list[ServiceInfo]:
        """Every live service."""

    async def members(self, group: str) -> list[Registration]:
        """The live registrations whose ``group`` is ``group``, sorted by name; empty if none.

        The contract of groups (docs/workers.md): a member registers under its own name with
        ``Registration.group`` set; it is listed here exactly while its own name is registered,
        and leaves with it (lease end, deregister, disconnect). This default asks `services`;
        a backend may answer from a cache it keeps current by watching the group.
        """
        rows = await self.services()
        return sorted((r.registration for r in rows if r.registration.group == group),
                      key=lambda r: r.name)

    @abstractmethod
    def forget(self, name: str) -> None:
        """Drop any cached registration of ``name`` (its connection just broke, say)."""

    @abstractmethod
    async def close(self) -> None:
        """Deregister if registered and disconnect."""

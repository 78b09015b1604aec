"""The `Registry` interface every backend implements (built-in name service, etcd)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

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
        """Remove our registration now (clean shutdown)."""

    @abstractmethod
    async def lookup(self, name: str) -> Registration:
        """The live registration of ``name``; raise `NameNotFound`."""

    @abstractmethod
    async def providers(self, func: str) -> list[str]:
        """Names of the live services that provide ``func`` (sorted)."""

    @abstractmethod
    async def services(self) -> list[ServiceInfo]:
        """Every live service."""

    @abstractmethod
    def forget(self, name: str) -> None:
        """Drop any cached registration of ``name`` (its connection just broke, say)."""

    @abstractmethod
    async def close(self) -> None:
        """Deregister if registered and disconnect."""

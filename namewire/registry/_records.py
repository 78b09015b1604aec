"""What the registry stores about a service, and the defaults every registry shares."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_LEASE_TTL",
    "DEFAULT_NAMESERVICE",
    "Registration",
    "ServiceInfo",
    "host_id",
]

DEFAULT_NAMESERVICE = "tcp://127.0.0.1:8010"
DEFAULT_LEASE_TTL = 5.0


@dataclass(frozen=True, slots=True)
class Registration:
    """A service as it registers itself: name, listening addresses, remote functions, metadata.

    ``host`` identifies the machine (see `host_id`) so that peers on the same host can prefer a unix
    socket. ``idempotent`` lists the functions that may be retried on another provider.
    """

    name: str
    addresses: tuple[str, ...] = ()
    functions: tuple[str, ...] = ()
    idempotent: tuple[str, ...] = ()
    host: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    pid: int = 0  # of the registering process (0: not said), to tell people who holds a name

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "addresses": list(self.addresses),
            "functions": list(self.functions),
            "idempotent": list(self.idempotent),
            "host": self.host,
            "metadata": dict(self.metadata),
            "pid": self.pid,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Registration:
        try:
            return cls(
                name=str(data["name"]),
                addresses=tuple(str(a) for a in data.get("addresses", ())),
                functions=tuple(str(f) for f in data.get("functions", ())),
                idempotent=tuple(str(f) for f in data.get("idempotent", ())),
                host=str(data.get("host", "")),
                metadata=dict(data.get("metadata") or {}),
                pid=int(data.get("pid") or 0),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed registration {data!r}: {exc}") from None


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    """A live service as listed by the registry (for ``namewire ls``).

    ``lease_age``: seconds since it registered; ``expires_in``: seconds until its lease runs out
    unless renewed (None when the registry does not say).
    """

    registration: Registration
    lease_age: float
    ttl: float
    expires_in: float | None = None


_HOST_ID: str | None = None


def host_id() -> str:
    """An identifier of this machine that differs between machines: hostname plus boot id."""
    global _HOST_ID
    if _HOST_ID is None:
        boot = ""
        try:
            with open("/proc/sys/kernel/random/boot_id") as f:
                boot = f.read().strip()
        except OSError:
            pass
        _HOST_ID = f"{socket.gethostname()}/{boot}" if boot else socket.gethostname()
    return _HOST_ID


def default_nameservice() -> str:
    """``$NAMEWIRE_NAMESERVICE`` if set, else `DEFAULT_NAMESERVICE`.

    Raises ValueError saying that the value came from the environment when it is no address URL.
    """
    from_env = os.environ.get("NAMEWIRE_NAMESERVICE")
    if not from_env:
        return DEFAULT_NAMESERVICE
    from ._backends import check_nameservice_url

    try:
        check_nameservice_url(from_env)
    except ValueError as exc:
        raise ValueError(f"$NAMEWIRE_NAMESERVICE (from the environment): {exc}") from None
    return from_env

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
    "check_carried",
    "host_id",
]

DEFAULT_NAMESERVICE = "tcp://127.0.0.1:8010"
DEFAULT_LEASE_TTL = 5.0


@dataclass(frozen=True, slots=True)
class Registration:
    """A service as it registers itself: name, listening addresses, remote functions, metadata.

    ``host`` identifies the machine (see `host_id`) so that peers on the same host can prefer a unix
    socket. ``idempotent`` lists the functions that may be retried on another provider. ``group``
    is the group this service is an instance of (``"PlusServer"`` for ``"PlusServer/2"``), or empty.
    ``identity`` is set by the registry, never by the service: the identity its connection proved
    (its TLS certificate's name), empty when it proved none. A connection from that identity may
    serve as the route to the name.

    ``via`` is set on a *carried* name (`Registry.register_carried`): a name with no node of its
    own, such as a gateway's browser session ``gateway/7``. Messages to it go to the node ``via``
    (the gateway), which delivers them; it has no addresses or functions of its own and lives as
    long as ``via``'s own registration, or until ``via`` drops it.
    """

    name: str
    addresses: tuple[str, ...] = ()
    functions: tuple[str, ...] = ()
    idempotent: tuple[str, ...] = ()
    host: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    pid: int = 0  # of the registering process (0: not said), to tell people who holds a name
    group: str = ""
    identity: str = ""
    via: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "addresses": list(self.addresses),
            "functions": list(self.functions),
            "idempotent": list(self.idempotent),
            "host": self.host,
            "metadata": dict(self.metadata),
            "pid": self.pid,
            "group": self.group,
            "identity": self.identity,
            "via": self.via,
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
                group=str(data.get("group") or ""),
                identity=str(data.get("identity") or ""),
                via=str(data.get("via") or ""),
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


def check_carried(registration: Registration, holder: Registration | None) -> None:
    """Raise ValueError unless ``registration`` may be carried by a node registered as ``holder``
    (see `Registration.via`): both backends check it before anything is stored."""
    name, via = registration.name, registration.via
    if holder is None or holder.via or via != holder.name:
        raise ValueError(f"{name!r} (via {via!r}) can be carried only by the node registered as "
                         f"{via!r}" + (f", not by {holder.name!r}" if holder is not None else
                                       ", which this registry client is not"))
    if name == via:
        raise ValueError(f"{name!r} cannot carry itself")
    if registration.addresses or registration.functions or registration.idempotent:
        raise ValueError(f"carried name {name!r} has addresses or functions: it is reached only "
                         f"through {via!r}, by message")


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

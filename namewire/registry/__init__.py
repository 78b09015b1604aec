"""Registries: where nodes register themselves and look each other up.

`Registry` is the interface; `NameServiceClient` talks to the built-in name service,
`EtcdRegistry` (``etcd://``, imported on first use) to an etcd cluster; `open_registry` chooses.
"""

from ._backends import check_nameservice_url, open_registry
from ._nameservice_client import NameServiceClient
from ._records import (
    DEFAULT_LEASE_TTL,
    DEFAULT_NAMESERVICE,
    Registration,
    ServiceInfo,
    default_nameservice,
    host_id,
)
from ._registry import Registry

__all__ = [
    "DEFAULT_LEASE_TTL",
    "DEFAULT_NAMESERVICE",
    "NameServiceClient",
    "Registration",
    "Registry",
    "ServiceInfo",
    "check_nameservice_url",
    "default_nameservice",
    "host_id",
    "open_registry",
]

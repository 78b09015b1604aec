"""The one place a registry backend is chosen from a name-service URL: `open_registry`.

``etcd://`` and ``etcds://`` select the etcd backend; every other URL is a namewire address
(``tcp://``, ``unix://`` ...) of the built-in name service, whose meaning the transport's scheme
table knows. A new backend is one more entry in `BACKENDS`.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from ..transport import Security
from ._etcd_url import client_ssl_context, parse_etcd_url
from ._nameservice_client import NameServiceClient
from ._records import DEFAULT_LEASE_TTL
from ._registry import Registry

__all__ = ["BACKENDS", "check_nameservice_url", "open_registry"]


# (url, node name, lease TTL, the node's security) -> a registry backend, not yet started.
_Make = Callable[[str, str, float, "Security | None"], Registry]


def _etcd(tls: bool) -> _Make:
    def make(url: str, node_name: str, ttl: float, security: Security | None) -> Registry:
        # etcd's own TLS comes from the etcds:// URL's options; the cluster secret is namewire's.
        from ._etcd import EtcdRegistry  # imports httpx: only for those who use etcd

        return EtcdRegistry(url, node_name=node_name, ttl=ttl, tls=tls)

    return make


def _nameservice(url: str, node_name: str, ttl: float, security: Security | None) -> Registry:
    return NameServiceClient(url, node_name=node_name, ttl=ttl, security=security)


BACKENDS: dict[str, _Make] = {
    "etcd": _etcd(tls=False),
    "etcds": _etcd(tls=True),
}
# How each backend's URL is checked without connecting (ValueError saying what is wrong).
_CHECKS: dict[str, Callable[[str], object]] = {
    "etcd": lambda url: parse_etcd_url(url, tls=False),
    "etcds": lambda url: client_ssl_context(parse_etcd_url(url, tls=True)),  # files readable?
}


def check_nameservice_url(url: str) -> str:
    """``url`` if it names a registry (a namewire address or an etcd URL); else ValueError."""
    check = _CHECKS.get(urlsplit(url).scheme)
    if check is None:
        from ..transport import parse_address

        parse_address(url)
    else:
        check(url)
    return url


def open_registry(
    url: str,
    *,
    node_name: str,
    ttl: float = DEFAULT_LEASE_TTL,
    security: Security | None = None,
) -> Registry:
    """A (not yet started) `Registry` for the name-service ``url``; ValueError for a bad URL.

    ``security`` is the node's: the built-in name service's connection uses its TLS and secret.
    """
    make = BACKENDS.get(urlsplit(url).scheme, _nameservice)
    return make(url, node_name, ttl, security)

"""``etcd://`` and ``etcds://`` name-service URLs: `parse_etcd_url` (no client needed to check one)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

__all__ = ["EtcdTarget", "client_ssl_context", "parse_etcd_url"]


@dataclass(frozen=True, slots=True)
class EtcdTarget:
    """Where an etcd registry lives: endpoints (``http(s)://host:port``), key prefix, TLS files."""

    url: str
    endpoints: tuple[str, ...]
    prefix: str
    tls: bool
    ca: str | None = None
    cert: str | None = None
    key: str | None = None


def parse_etcd_url(url: str, *, tls: bool) -> EtcdTarget:
    """``etcd://h1:2379,h2:2379[/prefix][?ca=&cert=&key=]`` (``etcds://`` for TLS).

    The path, if any, is the key prefix (default ``namewire``), so that several clusters of
    namewire can share one etcd. Raises ValueError naming the form.
    """
    parts = urlsplit(url)
    hosts = [h.strip() for h in parts.netloc.split(",") if h.strip()]
    form = "etcd://host:port[,host:port...][/prefix] or etcds://... with ?ca=&cert=&key="
    if not hosts:
        raise ValueError(f"bad etcd address {url!r}: no host; expected {form}")
    endpoints = []
    for host in hosts:
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit():
            raise ValueError(f"bad etcd address {url!r}: {host!r} is not host:port; expected {form}")
        endpoints.append(f"{'https' if tls else 'http'}://{host}")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = set(query) - {"ca", "cert", "key"}
    if unknown:
        raise ValueError(f"bad etcd address {url!r}: unknown option(s) {sorted(unknown)}; "
                         f"expected {form}")
    if query and not tls:
        raise ValueError(f"bad etcd address {url!r}: ca/cert/key need etcds://")
    if "key" in query and "cert" not in query:
        raise ValueError(f"bad etcd address {url!r}: key= needs cert= (the client certificate "
                         f"it belongs to)")
    prefix = parts.path.strip("/") or "namewire"
    return EtcdTarget(url, tuple(endpoints), prefix, tls, query.get("ca"), query.get("cert"),
                      query.get("key"))


def client_ssl_context(target: EtcdTarget) -> ssl.SSLContext:
    """The TLS context for ``etcds://``: its CA (else the system's) and client certificate.

    Raises ValueError naming the file and the URL when one cannot be read.
    """
    try:
        context = ssl.create_default_context(cafile=target.ca)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot read the etcd CA {target.ca!r} given in {target.url!r}: "
                         f"{exc}") from None
    if target.cert:
        try:
            context.load_cert_chain(target.cert, target.key)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot read the etcd client certificate {target.cert!r} "
                             f"(key {target.key or 'in the same file'!r}) given in "
                             f"{target.url!r}: {exc}") from None
    return context

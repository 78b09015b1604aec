"""`TlsConfig`: certificates for ``tls://`` connections, as standard library `ssl` contexts.

One configuration serves both directions, since a node both accepts and connects:

- ``cert``/``key``: this side's certificate chain and private key (PEM). A listener needs them; a
  connecting side presents them as its client certificate when given.
- ``ca``: the CA bundle peers are verified against (None: the system's CAs). When it is given, a
  listener also requires and verifies a client certificate (mutual TLS), unless
  ``verify_clients=False``.
- ``check_hostname``: the server's certificate must name the host connected to (on by default).

A verified peer certificate gives the peer's identity (`certificate_identity`): its subject's common
name, else its first DNS name.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TlsConfig", "certificate_identity"]


@dataclass(frozen=True)
class TlsConfig:
    """Certificates and checks for ``tls://``; see the module docstring. Contexts are made once."""

    cert: str | None = None
    key: str | None = None
    ca: str | None = None
    check_hostname: bool = True
    verify_clients: bool | None = None  # None: when ``ca`` is given
    _contexts: dict[str, ssl.SSLContext] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.key is not None and self.cert is None:
            raise ValueError("a TLS key needs its certificate (cert=)")
        for what, path in (("certificate", self.cert), ("key", self.key), ("CA", self.ca)):
            if path is not None and not os.path.isfile(path):
                raise ValueError(f"TLS {what} file {path!r} does not exist")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TlsConfig | None:
        """From ``NAMEWIRE_TLS_CERT``, ``NAMEWIRE_TLS_KEY``, ``NAMEWIRE_TLS_CA`` (None when none is
        set); ``NAMEWIRE_TLS_NO_HOSTNAME_CHECK=1`` turns the hostname check off."""
        env = os.environ if environ is None else environ
        cert, key, ca = (env.get(f"NAMEWIRE_TLS_{k}") or None for k in ("CERT", "KEY", "CA"))
        if cert is None and key is None and ca is None:
            return None
        return cls(cert=cert, key=key, ca=ca,
                   check_hostname=env.get("NAMEWIRE_TLS_NO_HOSTNAME_CHECK", "0") != "1")

    @property
    def mutual(self) -> bool:
        """A listener requires client certificates."""
        return self.verify_clients if self.verify_clients is not None else self.ca is not None

    def server_context(self) -> ssl.SSLContext:
        """The context a ``tls://`` listener accepts with; ValueError without a certificate."""
        context = self._contexts.get("server")
        if context is None:
            if self.cert is None:
                raise ValueError("listening on tls:// needs a certificate and key "
                                 "(--tls-cert/--tls-key or $NAMEWIRE_TLS_CERT/$NAMEWIRE_TLS_KEY; "
                                 "`namewire certs` makes a development set)")
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=self.ca)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(self.cert, self.key)
            context.verify_mode = ssl.CERT_REQUIRED if self.mutual else ssl.CERT_NONE
            self._contexts["server"] = context
        return context

    def client_context(self) -> ssl.SSLContext:
        """The context connections to ``tls://`` addresses are made with."""
        context = self._contexts.get("client")
        if context is None:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.check_hostname = self.check_hostname
            if self.cert is not None:
                context.load_cert_chain(self.cert, self.key)
            self._contexts["client"] = context
        return context


def certificate_identity(ssl_object: Any) -> str | None:
    """The identity in the peer's verified certificate: subject CN, else the first DNS name."""
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert()
    if not cert:
        return None  # no certificate, or one that was not verified
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    for kind, value in cert.get("subjectAltName", ()):
        if kind == "DNS":
            return str(value)
    return None

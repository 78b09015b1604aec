"""`Security`: what a node, the name service and their clients need to trust each other.

One object, given to `Node(security=...)`, `NameService(security=...)`, `Client(security=...)` and
built by the command line's security options; without one, `Security.from_env` reads:

==================================  ===========================================================
``NAMEWIRE_TLS_CERT``, ``_KEY``     this side's certificate and key (PEM): needed to listen on
                                    tls://, presented as the client certificate when connecting
``NAMEWIRE_TLS_CA``                 CA bundle peers are verified against; a listener then
                                    requires client certificates (mutual TLS)
``NAMEWIRE_TLS_NO_HOSTNAME_CHECK``  ``1``: do not check that a server's certificate names its host
``NAMEWIRE_SECRET_FILE``            file holding the cluster's shared secret (mode 0600)
``NAMEWIRE_SECRET``                 the shared secret itself (prefer the file: the environment
                                    of a process can be read by its user's other processes)
``NAMEWIRE_INSECURE``               ``1``: listen on non-loopback addresses without TLS or secret
``NAMEWIRE_HANDSHAKE_TIMEOUT``      seconds a connection has to finish its handshake (5)
``NAMEWIRE_POLICY_FILE``            TOML file of identities -> names they may register and
                                    functions they may call (`Policy`); none: no such checks
==================================  ===========================================================

A shared secret turns every hello into a challenge-response both ways (`SecretAuthenticator`);
TLS encrypts and, with a CA and client certificates, authenticates by certificate. Listening on an
address other hosts can reach with neither refuses to start (`InsecureListen`) unless ``insecure``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..wire import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_HELLO,
    MIN_SECRET_BYTES,
    Authenticator,
    SecretAuthenticator,
)
from ._address import parse_address
from ._policy import Policy
from ._schemes import scheme_of
from ._tls import TlsConfig

__all__ = [
    "DEFAULT_FRAME_TIMEOUT",
    "DEFAULT_MAX_CALLS_PER_CONNECTION",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_MAX_RUNNING_CALLS",
    "InsecureListen",
    "Security",
    "load_secret",
]

log = logging.getLogger("namewire.transport")

DEFAULT_MAX_CALLS_PER_CONNECTION = 1000
DEFAULT_MAX_RUNNING_CALLS = 10_000
DEFAULT_MAX_CONNECTIONS = 10_000
DEFAULT_FRAME_TIMEOUT = 30.0


class InsecureListen(ValueError):
    """A listener on an address other hosts can reach, with neither TLS nor a shared secret."""

    def __init__(self, url: str) -> None:
        self.url = url
        super().__init__(
            f"refusing to listen on {url} without TLS or a shared secret: any host that reaches "
            "it could register names and call every function. Either listen on tls:// with "
            "--tls-cert/--tls-key (`namewire certs` makes a development set), or give every "
            "node of the cluster the same --secret-file, or listen on 127.0.0.1; --insecure "
            "(or NAMEWIRE_INSECURE=1) starts anyway"
        )


def load_secret(path: str) -> bytes:
    """The shared secret in the file at ``path`` (surrounding whitespace dropped).

    ValueError when the file cannot be read, is readable by group or others (``chmod 600`` it),
    or holds fewer than 16 bytes.
    """
    try:
        mode = os.stat(path).st_mode
        with open(path, "rb") as file:
            secret = file.read().strip()
    except OSError as exc:
        raise ValueError(f"cannot read the secret file {path!r}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(f"secret file {path!r} is readable by others (mode {stat.S_IMODE(mode):o});"
                         f" `chmod 600 {path}`")
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"secret file {path!r} holds {len(secret)} bytes; a shared secret needs "
                         f"at least {MIN_SECRET_BYTES} (`namewire certs` writes one)")
    return secret


@dataclass(frozen=True)
class Security:
    """TLS, the shared secret, and the handshake's limits; see the module docstring.

    ``tls`` configures tls:// listeners and connections. ``secret`` (16 bytes or more) makes every
    connection prove both ways that it holds it. ``insecure`` allows non-loopback listeners with
    neither. ``handshake_timeout``: seconds a connection may take to complete its handshake
    (TLS, hello, proof) before it is closed. ``max_hello``: the largest hello (bytes) accepted from
    a peer not yet authenticated. ``max_calls_per_connection`` / ``max_running_calls``: how many
    ``async def`` calls may run at once for one connection / in the whole node; past either a
    call is answered at once with `Busy` instead of starting (sync functions run inline and are
    not counted: they hold the loop, not memory). ``max_connections``: accepted connections
    open at once per listener; past it accepting pauses (tls:// and ``NAMEWIRE_NATIVE=0``: newcomers
    are closed). ``frame_timeout``: seconds a frame, once begun, may go without growing (and
    without any frame completing) before its connection is closed. ``policy``: the path of a
    policy file (`Policy`), read here; ``rules`` is what it says (None without one).
    """

    tls: TlsConfig | None = None
    secret: bytes | None = field(default=None, repr=False)
    insecure: bool = False
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    max_hello: int = DEFAULT_MAX_HELLO
    max_calls_per_connection: int = DEFAULT_MAX_CALLS_PER_CONNECTION
    max_running_calls: int = DEFAULT_MAX_RUNNING_CALLS
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    frame_timeout: float = DEFAULT_FRAME_TIMEOUT
    policy: str | None = None
    rules: Policy | None = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.policy is not None:
            object.__setattr__(self, "rules", Policy.from_file(self.policy))
        if self.secret is not None and len(self.secret) < MIN_SECRET_BYTES:
            raise ValueError(f"a shared secret needs at least {MIN_SECRET_BYTES} bytes, "
                             f"not {len(self.secret)}")
        if self.frame_timeout <= 0:
            raise ValueError(f"frame_timeout must be positive, not {self.frame_timeout}")
        if self.handshake_timeout <= 0:
            raise ValueError(f"handshake_timeout must be positive, not {self.handshake_timeout}")
        if self.max_hello < 256:
            raise ValueError(f"max_hello must be at least 256 bytes, not {self.max_hello}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Security:
        """The configuration the environment variables describe (the module docstring)."""
        return cls.configure(environ=environ)

    @classmethod
    def configure(
        cls,
        *,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        tls_ca: str | None = None,
        no_hostname_check: bool = False,
        secret_file: str | None = None,
        insecure: bool = False,
        handshake_timeout: float | None = None,
        policy: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Security:
        """Options given (the command line's) over the environment's; ValueError on bad ones."""
        env = os.environ if environ is None else environ
        tls = TlsConfig.from_env(env)
        if tls_cert or tls_key or tls_ca or no_hostname_check:
            base = tls or TlsConfig()
            tls = TlsConfig(
                cert=tls_cert or base.cert,
                key=tls_key or base.key,
                ca=tls_ca or base.ca,
                check_hostname=base.check_hostname and not no_hostname_check,
            )
        secret = None
        path = secret_file or env.get("NAMEWIRE_SECRET_FILE")
        if path:
            secret = load_secret(path)
        elif env.get("NAMEWIRE_SECRET"):
            secret = env["NAMEWIRE_SECRET"].strip().encode()
        timeout = handshake_timeout
        if timeout is None:
            timeout = float(env.get("NAMEWIRE_HANDSHAKE_TIMEOUT") or DEFAULT_HANDSHAKE_TIMEOUT)
        return cls(
            tls=tls,
            secret=secret,
            insecure=insecure or env.get("NAMEWIRE_INSECURE", "0") == "1",
            handshake_timeout=timeout,
            policy=policy or env.get("NAMEWIRE_POLICY_FILE") or None,
        )

    def authenticator(self, name: str, *, accepting: bool) -> Authenticator | None:
        """The handshake's authentication step for one connection of node ``name``."""
        if self.secret is None:
            return None
        return SecretAuthenticator(self.secret, name=name, accepting=accepting)

    def check_listen(self, urls: Sequence[str]) -> None:
        """Raise `InsecureListen` for the first of ``urls`` other hosts could reach with neither
        TLS nor a secret (unless ``insecure``, which logs a warning instead)."""
        for url in urls:
            address = parse_address(url)
            scheme = scheme_of(address)
            if not scheme.network or scheme.tls or self.secret is not None:
                continue
            if _loopback(address.host):
                continue
            if not self.insecure:
                raise InsecureListen(str(address))
            log.warning("listening on %s without TLS or a shared secret (insecure mode): any host "
                        "that reaches it can call every function", address)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything

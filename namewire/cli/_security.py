"""The security options every subcommand that talks to a cluster takes, and the `Security` they make.

Each option falls back to its environment variable (`namewire.transport.Security.from_env`), so a
deployment can set them once for every process.
"""

from __future__ import annotations

import argparse

from ..transport import Security
from ._common import fail

__all__ = ["add_security_options", "security_of"]


def add_security_options(parser: argparse.ArgumentParser, *, listens: bool = False) -> None:
    group = parser.add_argument_group("security (docs/security.md)")
    group.add_argument("--tls-cert", metavar="PEM",
                       help="this side's certificate: needed to listen on tls://, presented as the "
                            "client certificate (default: $NAMEWIRE_TLS_CERT)")
    group.add_argument("--tls-key", metavar="PEM",
                       help="its private key (default: $NAMEWIRE_TLS_KEY)")
    group.add_argument("--tls-ca", metavar="PEM",
                       help="CA that peers' certificates must chain to; listeners then require "
                            "client certificates (default: $NAMEWIRE_TLS_CA, else the system's CAs)")
    group.add_argument("--no-hostname-check", action="store_true",
                       help="do not check that a tls:// server's certificate names its host")
    group.add_argument("--secret-file", metavar="PATH",
                       help="the cluster's shared secret, mode 0600 (default: "
                            "$NAMEWIRE_SECRET_FILE or $NAMEWIRE_SECRET)")
    group.add_argument("--handshake-timeout", type=float, metavar="SECONDS",
                       help="close connections that have not completed their handshake by then "
                            "(default: $NAMEWIRE_HANDSHAKE_TIMEOUT or 5)")
    if listens:
        group.add_argument("--policy", metavar="FILE",
                           help="TOML file of identities -> names they may register and functions "
                                "they may call (default: $NAMEWIRE_POLICY_FILE; none: no checks)")
        group.add_argument("--insecure", action="store_true",
                           help="listen on addresses other hosts can reach without TLS or a "
                                "secret (default: refuse; $NAMEWIRE_INSECURE=1)")


def security_of(args: argparse.Namespace) -> Security:
    """The `Security` the options (over the environment) describe; exits on bad options."""
    try:
        return Security.configure(
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_ca=args.tls_ca,
            no_hostname_check=args.no_hostname_check,
            secret_file=args.secret_file,
            insecure=getattr(args, "insecure", False),
            handshake_timeout=args.handshake_timeout,
            policy=getattr(args, "policy", None),
        )
    except ValueError as exc:
        fail(str(exc))

"""``namewire gateway``: let browsers reach services by name over WebSocket (docs/web.md)."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import ssl
import sys
from pathlib import Path
from typing import Any

from .. import runtime
from ..transport import scheme_of
from ._common import (
    add_logging_options,
    add_nameservice_option,
    address,
    fail,
    nameservice_url,
    run_command,
    setup_logging,
)
from ._security import add_security_options, security_of

log = logging.getLogger("namewire.cli")

_HELP = """\
Browsers connect to --listen and load the JS client from /namewire.js there. They reach only what
--expose names: NAME (every function, and messages), NAME:* (the same) or NAME:f,g (those
functions, and messages). Each browser session gets a name, <gateway>/<n>, registered while it is
connected: any service reaches it with node.send_msg(name, msg).

--auth FILE:FUNC names `def FUNC(token, origin) -> bool` (or async) in a Python file; the token is
the `token` given to connect(). --auth secret accepts the tokens that
namewire.gateway.mint_token(secret, user, ttl) makes from the cluster's shared secret
(NAMEWIRE_SECRET_FILE); the secret itself never goes to a browser.

--origin is repeatable; without it only pages served from the gateway's own host:port (and clients
that send no Origin) are accepted; --origin '*' accepts all.
"""


def add_parsers(commands: Any) -> None:
    gw = commands.add_parser("gateway", help="bridge browsers to services over WebSocket",
                             description=_HELP,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    gw.add_argument("--listen", metavar="URL", default="ws://127.0.0.1:8080/", type=websocket_url,
                    help="where browsers connect (default: ws://127.0.0.1:8080/)")
    gw.add_argument("--name", default="gateway", help="the gateway's node name (default: gateway)")
    add_nameservice_option(gw)
    gw.add_argument("--expose", metavar="NAME[:FUNCS]", action="append", default=[],
                    help="a service browsers may reach, repeatable")
    gw.add_argument("--origin", metavar="ORIGIN", action="append",
                    help="an allowed page origin (http://host:port), repeatable")
    gw.add_argument("--auth", metavar="FILE:FUNC|secret",
                    help="token check run before the upgrade: a function, or 'secret' for tokens "
                         "made with namewire.gateway.mint_token and the cluster secret")
    limits = gw.add_argument_group("limits per browser connection")
    limits.add_argument("--max-in-flight", type=int, default=64, metavar="N",
                        help="requests waiting for an answer (default: 64)")
    limits.add_argument("--max-message", type=int, default=65536, metavar="BYTES",
                        help="size of one message from the browser (default: 65536)")
    limits.add_argument("--rate", type=float, default=50.0, metavar="PER_S",
                        help="requests per second (default: 50)")
    limits.add_argument("--burst", type=int, default=100, metavar="N",
                        help="requests at once above the rate (default: 100)")
    gw.add_argument("--call-timeout", type=float, default=10.0, metavar="SECONDS",
                    help="bound on each browser call (default: 10)")
    gw.add_argument("--certfile", metavar="PEM", help="TLS certificate chain: browsers use wss://")
    gw.add_argument("--keyfile", metavar="PEM", help="the certificate's private key")
    add_security_options(gw)  # the gateway's node is a member of the cluster like any other
    add_logging_options(gw)
    gw.set_defaults(handler=cmd_gateway)


def _authenticate(auth: str | None, secret: bytes | None) -> Any:
    """The token check ``--auth`` names: FILE:FUNC, or ``secret`` (tokens signed with the
    cluster's shared ``secret``); ValueError saying what is wrong."""
    if auth is None:
        return None
    if auth != "secret":
        return load_function(auth)
    from ..gateway import secret_tokens

    if secret is None:
        raise ValueError("--auth secret needs the cluster's shared secret "
                         "(--secret-file, NAMEWIRE_SECRET_FILE or NAMEWIRE_SECRET)")
    return secret_tokens(secret)


def websocket_url(text: str) -> str:
    """argparse ``type=`` for --listen: an address URL whose scheme serves WebSocket."""
    url = address(text)
    if scheme_of(url).serve_streams is None:
        raise argparse.ArgumentTypeError(f"a gateway listens on ws:// or wss://, not {text!r}")
    return url


def load_function(spec: str) -> Any:
    """``FILE:FUNC`` -> the function; exits with a readable error if it is not there."""
    path, _, func = spec.rpartition(":")
    if not path or not func:
        fail(f"--auth {spec!r}: expected FILE:FUNC, e.g. app.py:check_token")
    file = Path(path)
    if not file.is_file():
        fail(f"--auth {spec!r}: no such file: {path}")
    module_spec = importlib.util.spec_from_file_location(f"namewire_auth_{file.stem}", file)
    if module_spec is None or module_spec.loader is None:
        fail(f"--auth {spec!r}: cannot load {path} as Python")
    module = importlib.util.module_from_spec(module_spec)
    sys.path.insert(0, str(file.resolve().parent))
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 -- the app's own bug: one line that names it
        fail(f"--auth {spec!r}: {path} failed at import: {type(exc).__name__}: {exc}", 1)
    fn = getattr(module, func, None)
    if not callable(fn):
        fail(f"--auth {spec!r}: {path} defines no function {func!r}")
    return fn


def cmd_gateway(args: argparse.Namespace) -> int:
    from ..gateway import Gateway, Limits, Policy
    from ..node import Node

    setup_logging(args)
    security = security_of(args)
    try:
        policy = Policy.of(
            args.expose,
            origins=frozenset(args.origin) if args.origin else None,
            authenticate=_authenticate(args.auth, security.secret),
            limits=Limits(args.max_in_flight, args.max_message, args.rate, args.burst),
        )
    except ValueError as exc:
        fail(str(exc))
    context = None
    if args.certfile:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(args.certfile, args.keyfile)
        except (OSError, ssl.SSLError) as exc:
            fail(f"--certfile/--keyfile: {exc}")
    ns_url = nameservice_url(args)
    runtime.set_default_node_name(args.name)
    gateway = Gateway(args.name, policy=policy, call_timeout=args.call_timeout, ssl=context,
                      node=Node(args.name, security=security))

    async def serve() -> None:
        async with gateway.serve(args.listen, nameservice=ns_url):
            print(f"namewire gateway {args.name} on {gateway.url}", flush=True)
            await asyncio.Event().wait()

    return run_command(serve())

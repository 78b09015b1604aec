"""``namewire run APP`` (the seed's ``luanet app.lua``) and ``namewire nameservice``."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import inspect
import logging
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from .. import runtime
from ..errors import NamewireError
from ..nameservice import serve_forever
from ..node import Node
from ..registry import DEFAULT_LEASE_TTL, DEFAULT_NAMESERVICE
from ..transport import InsecureListen, parse_address
from ._common import (
    add_logging_options,
    add_nameservice_option,
    fail,
    nameservice_url,
    setup_logging,
)
from ._security import add_security_options, security_of

log = logging.getLogger("namewire.cli")

_RUN_HELP = """\
APP is a Python file that defines a module-level `node = namewire.Node("Name")` with its remote
functions. If it also defines `async def main(node)`, that runs once the node is serving and the
service stops when it returns; otherwise the service runs until SIGINT/SIGTERM.
"""


def add_parsers(commands: Any) -> None:
    run = commands.add_parser(
        "run", help="run a service from a Python file", description=_RUN_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("app", metavar="APP", help="path to the service's .py file")
    run.add_argument("--name", help="service name (default: the name given to the app's Node)")
    add_nameservice_option(run)
    run.add_argument("--listen", metavar="URL", action="append",
                     help="address to accept connections on, repeatable "
                          "(default: tcp://127.0.0.1:0, plus a unix socket)")
    run.add_argument("--advertise", metavar="URL", action="append",
                     help="address to register instead of the --listen ones, repeatable: where "
                          "other hosts reach this service (NAT, containers, a proxy)")
    run.add_argument("--no-unix", action="store_true",
                     help="do not also listen on a unix socket for same-host peers")
    run.add_argument("--lease-ttl", type=float, default=DEFAULT_LEASE_TTL, metavar="SECONDS",
                     help=f"registration lease (default: {DEFAULT_LEASE_TTL})")
    run.add_argument("--grace", type=float, default=5.0, metavar="SECONDS",
                     help="on shutdown, time given to calls in flight (default: 5)")
    add_security_options(run, listens=True)
    add_logging_options(run)
    run.set_defaults(handler=cmd_run)

    ns = commands.add_parser("nameservice", help="run the built-in name service")
    ns.add_argument("--listen", metavar="URL", default=DEFAULT_NAMESERVICE,
                    help=f"address to listen on (default: {DEFAULT_NAMESERVICE}, loopback only)")
    add_security_options(ns, listens=True)
    add_logging_options(ns)
    ns.set_defaults(handler=cmd_nameservice)


def load_app(path: str) -> tuple[Node, Any]:
    """Import the app file; return its ``node`` and its ``main`` (or None)."""
    file = Path(path)
    if not file.is_file():
        fail(f"no such file: {path}")
    spec = importlib.util.spec_from_file_location(f"namewire_app_{file.stem}", file)
    if spec is None or spec.loader is None:
        fail(f"cannot load {path} as Python")
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    sys.path.insert(0, str(file.resolve().parent))
    spec.loader.exec_module(module)
    node = getattr(module, "node", None)
    if not isinstance(node, Node):
        fail(f"{path} defines no module-level `node = namewire.Node(...)`")
    main = getattr(module, "main", None)
    if main is not None and not inspect.iscoroutinefunction(main):
        fail(f"{path}: `main` must be `async def main(node)`")
    return node, main


def cmd_run(args: argparse.Namespace) -> int:
    setup_logging(args)
    for url in args.advertise or ():
        try:
            parse_address(url)
        except ValueError as exc:
            fail(f"--advertise {url}: {exc}")
    node, main = load_app(args.app)
    if args.name:
        node.name = args.name
    node.security = security_of(args)
    runtime.set_default_node_name(node.name)

    async def serve() -> None:
        async with node.serve(
            listen=args.listen or "tcp://127.0.0.1:0",
            unix=not args.no_unix,
            advertise=args.advertise,
            nameservice=nameservice_url(args),
            lease_ttl=args.lease_ttl,
            grace=args.grace,
        ):
            log.info("%s serving on %s", node.name, ", ".join(node.addresses))
            if main is not None:
                await main(node)
            else:
                await asyncio.Event().wait()

    try:
        runtime.run(serve())
    except NamewireError as exc:
        fail(str(exc), 1)
    except InsecureListen as exc:
        fail(str(exc))
    return 0


def cmd_nameservice(args: argparse.Namespace) -> int:
    setup_logging(args)
    runtime.set_default_node_name("namewire.nameservice")
    security = security_of(args)
    try:
        runtime.run(serve_forever(args.listen, security=security))
    except NamewireError as exc:
        fail(str(exc), 1)
    except ValueError as exc:
        fail(str(exc))
    return 0

"""``namewire run APP`` (run a service from a Python file) and ``namewire nameservice``.

A service that fails is reported through the logging pipeline (ERROR, the node's name, the
traceback; JSON with ``--log-format json``) before the process exits with status 1; a mistake in
the command line or the app file is one line and status 2 (`_common`).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import inspect
import logging
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from .. import runtime
from ..errors import NamewireError, TransportError
from ..nameservice import serve_forever
from ..node import DEFAULT_REGISTRY_WAIT, Node
from ..registry import DEFAULT_LEASE_TTL, DEFAULT_NAMESERVICE
from ..transport import InsecureListen
from ._about import socket_implementation
from ._common import (
    FAILED,
    INTERRUPTED,
    add_logging_options,
    add_nameservice_option,
    address,
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
    run.add_argument("--listen", metavar="URL", action="append", type=address,
                     help="address to accept connections on, repeatable "
                          "(default: tcp://127.0.0.1:0, plus a unix socket)")
    run.add_argument("--advertise", metavar="URL", action="append", type=address,
                     help="address to register instead of the --listen ones, repeatable: where "
                          "other hosts reach this service (NAT, containers, a proxy)")
    run.add_argument("--no-unix", action="store_true",
                     help="do not also listen on a unix socket for same-host peers")
    run.add_argument("--lease-ttl", type=float, default=DEFAULT_LEASE_TTL, metavar="SECONDS",
                     help=f"registration lease (default: {DEFAULT_LEASE_TTL})")
    run.add_argument("--grace", type=float, default=5.0, metavar="SECONDS",
                     help="on shutdown, time given to calls in flight; a second Ctrl-C or "
                          "SIGTERM ends the wait (default: 5)")
    run.add_argument("--wait-for-nameservice", type=float, default=DEFAULT_REGISTRY_WAIT,
                     metavar="SECONDS",
                     help="at start, keep trying to reach the name service for this long, with "
                          f"backoff; 0 tries once (default: {DEFAULT_REGISTRY_WAIT:g})")
    run.add_argument("--metrics", metavar="URL", type=address,
                     help="serve Prometheus metrics at this tcp://host:port (docs/observability.md)")
    run.add_argument("--workers", type=int, default=None, metavar="N",
                     help="run N processes of the service as the group NAME: instances "
                          "NAME/1 .. NAME/N, restarted when they crash (see docs/workers.md)")
    add_security_options(run, listens=True)
    add_logging_options(run)
    run.set_defaults(handler=cmd_run)

    ns = commands.add_parser("nameservice", help="run the built-in name service")
    ns.add_argument("--listen", metavar="URL", default=DEFAULT_NAMESERVICE, type=address,
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
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 -- the app's own bug: one line that points at it
        fail(f"{path} failed at import: {_where(exc, file)}{type(exc).__name__}: {exc} "
             f"(`python {path}` shows the whole traceback)", FAILED)
    node = getattr(module, "node", None)
    if not isinstance(node, Node):
        fail(f"{path} defines no module-level `node = namewire.Node(...)`")
    main = getattr(module, "main", None)
    if main is not None and not inspect.iscoroutinefunction(main):
        fail(f"{path}: `main` must be `async def main(node)`")
    return node, main


def _where(exc: BaseException, file: Path) -> str:
    """``line N: `` of the innermost frame in ``file`` (or of a syntax error), else nothing."""
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f"line {exc.lineno}: "
    target = str(file.resolve())
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == target]
    return f"line {lines[-1]}: " if lines else ""


def _fatal(args: argparse.Namespace, message: str, *, with_traceback: bool) -> int:
    """Log why the service stops (ERROR, with the traceback if asked); status 1.

    When the log goes to a file only, the one line goes to stderr as well, so that the terminal
    that started the service does not show a silent exit.
    """
    log.error("%s", message, exc_info=with_traceback)
    if args.log_file:
        print(f"namewire: error: {message} (details in {args.log_file})", file=sys.stderr)
    return FAILED


def cmd_run(args: argparse.Namespace) -> int:
    setup_logging(args)
    ns_url = nameservice_url(args)
    node, main = load_app(args.app)
    if args.name:
        node.name = args.name
    node.security = security_of(args)
    if args.workers is not None:
        from ._workers import run_group

        return run_group(args, node.name)
    if args.metrics:
        if node.metrics is None:
            fail(f"--metrics: {args.app} makes its Node with metrics=False")
        node.metrics_url = args.metrics
    runtime.set_default_node_name(node.name)
    main_failed: list[str] = []
    try:
        runtime.run(serve_app(node, main, args, ns_url, main_failed))
    except NamewireError as exc:  # could not start: expected causes, one line says which
        return _fatal(args, f"{node.name}: {type(exc).__name__}: {exc}", with_traceback=False)
    except InsecureListen as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        return INTERRUPTED
    except Exception as exc:  # noqa: BLE001 -- a bug while stopping: logged with its traceback
        return _fatal(args, f"{node.name}: stopped by {type(exc).__name__}: {exc}",
                      with_traceback=True)
    if main_failed:
        if args.log_file:
            print(f"namewire: error: {main_failed[0]} (traceback in {args.log_file})",
                  file=sys.stderr)
        return FAILED
    return 0


async def serve_app(node: Node, main: Any, args: argparse.Namespace, ns_url: str,
                    main_failed: list[str]) -> None:
    """Serve ``node`` with the ``run`` options until ``main`` returns (or forever); a failure of
    ``main`` is logged and appended to ``main_failed``."""
    async with node.serve(
        listen=args.listen or "tcp://127.0.0.1:0",
        unix=not args.no_unix,
        advertise=args.advertise,
        nameservice=ns_url,
        lease_ttl=args.lease_ttl,
        grace=args.grace,
        registry_wait=args.wait_for_nameservice,
    ):
        log.info("%s serving on %s (%s)", node.name, ", ".join(node.addresses),
                 socket_implementation())
        if main is None:
            await asyncio.Event().wait()
            return
        try:
            await main(node)
        except Exception as exc:  # reported through the log, then exit 1
            main_failed.append(f"{node.name}: main(node) raised {type(exc).__name__}: {exc}; "
                               "stopping")
            log.exception("%s", main_failed[0])


def cmd_nameservice(args: argparse.Namespace) -> int:
    setup_logging(args)
    runtime.set_default_node_name("namewire.nameservice")
    security = security_of(args)
    try:
        runtime.run(serve_forever(args.listen, security=security))
    except TransportError as exc:
        hint = ""
        if "in use" in str(exc):
            hint = (f"; a name service is probably running there already (`namewire ls "
                    f"--nameservice {args.listen}` shows it), or give another --listen")
        return _fatal(args, f"{exc}{hint}", with_traceback=False)
    except NamewireError as exc:
        return _fatal(args, f"{type(exc).__name__}: {exc}", with_traceback=False)
    except ValueError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        return INTERRUPTED
    return 0

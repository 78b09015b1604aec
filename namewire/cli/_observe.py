"""``namewire dashboard`` (a live web page of the cluster) and ``namewire top`` (the same in the
terminal)."""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from ..node import Node
from ._common import (
    add_logging_options,
    add_nameservice_option,
    address,
    fail,
    nameservice_url,
    run_command,
    setup_logging,
)

DEFAULT_DASHBOARD = "tcp://127.0.0.1:8090"


def add_parsers(commands: Any) -> None:
    dash = commands.add_parser("dashboard", help="serve a live web page of the cluster")
    add_nameservice_option(dash)
    dash.add_argument("--listen", metavar="URL", default=DEFAULT_DASHBOARD, type=address,
                      help=f"where to serve the page (default: {DEFAULT_DASHBOARD})")
    dash.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                      help="refresh period (default: 1)")
    add_logging_options(dash)
    dash.set_defaults(handler=cmd_dashboard)

    top = commands.add_parser("top", help="the cluster's services, rates and errors, live")
    add_nameservice_option(top)
    top.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                     help="refresh period (default: 1)")
    top.add_argument("--once", action="store_true",
                     help="print one view (measured over one interval) and exit")
    add_logging_options(top)
    top.set_defaults(handler=cmd_top)


def _observer(kind: str) -> Node:
    # A caller only (no listener), with a name of its own: the services see it as a caller.
    return Node(f"namewire.{kind}-{os.getpid()}", metrics=False)


def cmd_dashboard(args: argparse.Namespace) -> int:
    setup_logging(args)
    from ..observe._dashboard import Dashboard

    ns_url = nameservice_url(args)
    try:
        Dashboard.check_address(args.listen)
    except ValueError as exc:
        fail(f"--listen: {exc}")

    async def serve() -> None:
        node = _observer("dashboard")
        async with node.serve(nameservice=ns_url, listen=None):
            dashboard = Dashboard(node, args.listen, interval=args.interval)
            try:
                await dashboard.start()
            except OSError as exc:
                fail(f"--listen {args.listen}: {exc.strerror or exc}", 1)
            print(f"namewire dashboard at {dashboard.url}", flush=True)
            try:
                await asyncio.Event().wait()
            finally:
                await dashboard.close()

    return run_command(serve())


def cmd_top(args: argparse.Namespace) -> int:
    setup_logging(args)
    try:
        from rich.console import Console
        from rich.live import Live

        from ..observe._top import render_top
    except ImportError:
        fail("namewire top needs rich: pip install 'namewire[top]'")
    from ..observe import ClusterView

    ns_url = nameservice_url(args)

    async def show() -> None:
        node = _observer("top")
        async with node.serve(nameservice=ns_url, listen=None):
            view = ClusterView(node)
            await view.refresh()  # the first look has no interval to compute rates over
            await asyncio.sleep(args.interval)
            if args.once:
                Console(width=int(os.environ.get("COLUMNS", "160"))).print(
                    render_top(await view.refresh()))
                return
            with Live(render_top(await view.refresh()), auto_refresh=False) as live:
                while True:
                    await asyncio.sleep(args.interval)
                    live.update(render_top(await view.refresh()), refresh=True)

    return run_command(show())

"""``namewire run APP --workers N``: N processes of one service, as the group of its name.

The command's own process serves nothing: it starts the instances as workers (`namewire.fork`,
spawned interpreters), names them ``NAME/1`` .. ``NAME/N`` in the group ``NAME``, and restarts one
that crashes under a `Supervisor` (backoff from 0.2 s, at most 2N restarts in 30 s, then it gives
up, stops the others and exits with status 1). SIGINT/SIGTERM stop every instance cleanly.
"""

from __future__ import annotations

import argparse
import copy
import functools

from .. import runtime
from ..errors import SupervisorFailed
from ..node._groups import member_name
from ..transport import parse_address
from ..workers import run_worker
from ._common import FAILED, fail, nameservice_url, setup_logging

__all__ = ["run_group", "serve_instance"]


def run_group(args: argparse.Namespace, group: str) -> int:
    count = args.workers
    if count < 1:
        fail(f"--workers needs at least 1 process, not {count}")
    for url in args.listen or ():
        address = parse_address(url)
        if count > 1 and address.port:
            fail(f"--listen {url}: {count} workers cannot share one fixed port; use port 0 "
                 "(each instance registers the address it got)")
    runtime.set_default_node_name(group)

    async def supervise() -> None:
        async with runtime.Supervisor("one_for_one", max_restarts=2 * count, within=30.0,
                                      backoff=0.2, name=f"{group} workers") as supervisor:
            # A stopped instance gets its calls in flight --grace seconds to finish, then a second.
            stop = functools.partial(run_worker, grace=args.grace + 1.0)
            for index in range(1, count + 1):
                supervisor.spawn(stop, serve_instance, args, index, name=member_name(group, index))

    try:
        runtime.run(supervise())
    except SupervisorFailed as exc:
        fail(str(exc), 1)
    return 0


async def serve_instance(args: argparse.Namespace, index: int) -> None:
    """One instance of the group (runs in its worker process): the app's node as ``NAME/index``."""
    from ._run import load_app, serve_app

    args = copy.copy(args)
    node, main = load_app(args.app)
    group = args.name or node.name
    node.name = member_name(group, index)
    node.group = group
    if args.log_file:
        args.log_file = f"{args.log_file}.{index}"  # one file per process: rotation is not shared
    setup_logging(args)
    runtime.set_default_node_name(node.name)
    failed: list[str] = []
    await serve_app(node, main, args, nameservice_url(args), failed)
    if failed:
        raise SystemExit(FAILED)  # main(node) raised (logged): the supervisor restarts us

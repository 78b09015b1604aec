"""``namewire ls``, ``namewire call`` and ``namewire send``: look at and poke a running cluster."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ..errors import RemoteError
from ..node import Node
from ..registry import ServiceInfo, open_registry
from ._common import add_nameservice_option, fail, nameservice_url, run_command
from ._security import add_security_options, security_of


def add_parsers(commands: Any) -> None:
    ls = commands.add_parser(
        "ls", help="list live services: addresses, functions, how long registered",
        description="List the live services the name service knows: their addresses, their "
                    "functions, how long each has been registered, and when its lease expires "
                    "unless renewed (a live service renews it every third of its lease).",
    )
    add_nameservice_option(ls)
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_security_options(ls)
    ls.set_defaults(handler=cmd_ls)

    call = commands.add_parser(
        "call", help="call a remote function and print its JSON result",
        description="Call FUNC on service NAME. Each ARG is JSON: 1, 2.5, true, null, "
                    "'\"text\"', '[1, 2]', '{\"k\": 1}'.",
    )
    call.add_argument("name", metavar="NAME", help="the service to call, e.g. PlusServer")
    call.add_argument("func", metavar="FUNC", help="its remote function, e.g. plus")
    call.add_argument("args", metavar="ARG", nargs="*",
                      help="positional arguments, each one JSON value")
    call.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                      help="give up after this long (default: 10)")
    call.add_argument("--traceback", action="store_true",
                      help="when the remote function raises, print its traceback from the service")
    add_nameservice_option(call)
    add_security_options(call)
    call.set_defaults(handler=cmd_call)

    send = commands.add_parser(
        "send", help="send a message (JSON) to a service",
        description="Send MSG to service NAME, where `get_msg()` receives it. Delivered at most "
                    "once: no answer comes back (use `call` for that).",
    )
    send.add_argument("name", metavar="NAME", help="the service to send to")
    send.add_argument("msg", metavar="MSG", help='JSON, e.g. \'{"event": "hi"}\' or \'"text"\'')
    add_nameservice_option(send)
    add_security_options(send)
    send.set_defaults(handler=cmd_send)


def _json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        fail(f"{what} {text!r} is not JSON (a string needs quotes: '\"{text}\"')")


def _client_node(args: argparse.Namespace) -> Node:
    return Node(f"namewire-cli-{os.getpid()}", codec="msgpack", security=security_of(args))


def cmd_call(args: argparse.Namespace) -> int:
    values = [_json_arg(a, f"argument {i + 1}") for i, a in enumerate(args.args)]
    node = _client_node(args)

    async def call() -> None:
        async with node.serve(listen=None, nameservice=nameservice_url(args), registry_wait=0):
            try:
                result = await node.rpc_call(args.name, args.func, *values, timeout=args.timeout)
            except RemoteError as exc:
                if args.traceback and exc.remote_traceback:
                    print(f"traceback in {args.name}:\n{exc.remote_traceback.rstrip()}",
                          file=sys.stderr)
                raise
        print(json.dumps(result, default=repr))

    return run_command(call())


def cmd_send(args: argparse.Namespace) -> int:
    msg = _json_arg(args.msg, "message")
    node = _client_node(args)

    async def send() -> None:
        async with node.serve(listen=None, nameservice=nameservice_url(args), registry_wait=0):
            await node.send_msg(args.name, msg)

    return run_command(send())


def cmd_ls(args: argparse.Namespace) -> int:
    url = nameservice_url(args)

    async def ls() -> None:
        client = open_registry(url, node_name=f"namewire-ls-{os.getpid()}",
                               security=security_of(args))
        await client.start()
        try:
            services = await client.services()
            degraded = client.degraded
        finally:
            await client.close()
        if args.json:
            print(json.dumps([_as_json(s) for s in services], indent=2))
        else:
            print(format_table(services))
        if degraded:
            print(f"registry {url} degraded: {degraded}", file=sys.stderr)

    return run_command(ls())


def _as_json(info: ServiceInfo) -> dict[str, Any]:
    return {
        **info.registration.to_dict(),
        "registered_for": info.lease_age,
        "lease_expires_in": info.expires_in,
        "ttl": info.ttl,
        "lease_age": info.lease_age,  # the old name of registered_for, kept for scripts
    }


def format_table(services: list[ServiceInfo]) -> str:
    """Services as an aligned text table, one row per service."""
    if not services:
        return "no live services"
    header = ("NAME", "ADDRESSES", "FUNCTIONS", "REGISTERED FOR", "LEASE EXPIRES IN")
    rows = [
        (
            s.registration.name,
            " ".join(s.registration.addresses)
            or (f"via {s.registration.via}" if s.registration.via else "-"),
            ", ".join(s.registration.functions) or "-",
            f"{s.lease_age:.1f}s",
            f"{s.expires_in:.1f}s" if s.expires_in is not None else "-",
        )
        for s in services
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )



"""``namewire ls``, ``namewire call`` and ``namewire send``: look at and poke a running cluster."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from .. import runtime
from ..errors import NamewireError
from ..node import Node
from ..registry import NameServiceClient, ServiceInfo
from ._common import add_nameservice_option, fail, nameservice_url
from ._security import add_security_options, security_of


def add_parsers(commands: Any) -> None:
    ls = commands.add_parser("ls", help="list live services with addresses, functions, lease age")
    add_nameservice_option(ls)
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_security_options(ls)
    ls.set_defaults(handler=cmd_ls)

    call = commands.add_parser(
        "call", help="call a remote function and print its JSON result",
        description="Call FUNC on service NAME. Each ARG is JSON: 1, 2.5, true, null, "
                    "'\"text\"', '[1, 2]', '{\"k\": 1}'.",
    )
    call.add_argument("name", metavar="NAME")
    call.add_argument("func", metavar="FUNC")
    call.add_argument("args", metavar="ARG", nargs="*")
    call.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                      help="give up after this long (default: 10)")
    add_nameservice_option(call)
    add_security_options(call)
    call.set_defaults(handler=cmd_call)

    send = commands.add_parser("send", help="send a message (JSON) to a service")
    send.add_argument("name", metavar="NAME")
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


def _run_client(coro: Any) -> int:
    try:
        runtime.run(coro)
    except NamewireError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_call(args: argparse.Namespace) -> int:
    values = [_json_arg(a, f"argument {i + 1}") for i, a in enumerate(args.args)]
    node = _client_node(args)

    async def call() -> None:
        async with node.serve(listen=None, nameservice=nameservice_url(args)):
            result = await node.rpc_call(args.name, args.func, *values, timeout=args.timeout)
        print(json.dumps(result, default=repr))

    return _run_client(call())


def cmd_send(args: argparse.Namespace) -> int:
    msg = _json_arg(args.msg, "message")
    node = _client_node(args)

    async def send() -> None:
        async with node.serve(listen=None, nameservice=nameservice_url(args)):
            await node.send_msg(args.name, msg)

    return _run_client(send())


def cmd_ls(args: argparse.Namespace) -> int:
    url = nameservice_url(args)

    async def ls() -> None:
        client = NameServiceClient(url, node_name=f"namewire-ls-{os.getpid()}",
                                   security=security_of(args))
        await client.start()
        try:
            services = await client.services()
        finally:
            await client.close()
        if args.json:
            print(json.dumps([_as_json(s) for s in services], indent=2))
        else:
            print(format_table(services))

    return _run_client(ls())


def _as_json(info: ServiceInfo) -> dict[str, Any]:
    return {**info.registration.to_dict(), "lease_age": info.lease_age, "ttl": info.ttl}


def format_table(services: list[ServiceInfo]) -> str:
    """Services as an aligned text table, one row per service."""
    if not services:
        return "no live services"
    header = ("NAME", "ADDRESSES", "FUNCTIONS", "LEASE AGE")
    rows = [
        (
            s.registration.name,
            " ".join(s.registration.addresses) or "-",
            ", ".join(s.registration.functions) or "-",
            f"{s.lease_age:.1f}s",
        )
        for s in services
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )



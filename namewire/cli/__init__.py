"""The ``namewire`` command: run services and a name service, inspect and poke a running cluster.

Each subcommand lives in its own module; this one only builds the parser and dispatches.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..registry import DEFAULT_NAMESERVICE
from . import _cluster, _demo, _gateway, _observe, _run
from ._about import version_text
from ._common import Parser

__all__ = ["main"]

_EPILOG = f"""\
The name service address defaults to $NAMEWIRE_NAMESERVICE, else {DEFAULT_NAMESERVICE}.

examples:
  namewire nameservice                         start the name service on {DEFAULT_NAMESERVICE}
  namewire run examples/plus_server.py         run a service defined in a Python file
  namewire ls                                  list live services
  namewire call PlusServer plus 1 2            call a remote function, print the JSON result
  namewire send Logger '{{"event": "hi"}}'       send a message
  namewire gateway --expose PlusServer         let browsers call PlusServer (ws://127.0.0.1:8080/)
  namewire top                                 services, calls/s, latencies, errors, live
"""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="namewire",
        description="Distributed Python services that talk to each other by name.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=version_text(),
                        help="print the version and which sockets this install uses, and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    _run.add_parsers(commands)
    _cluster.add_parsers(commands)
    _demo.add_parsers(commands)
    _gateway.add_parsers(commands)
    _observe.add_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``namewire`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        build_parser().print_help()
        return 0
    if argv[:1] == ["bench"]:
        # Everything after "bench" belongs to bench/run.py, options first included.
        return _demo.run_bench(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())

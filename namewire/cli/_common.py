"""The error style every subcommand shares, and the options several of them take.

One style for every command: a mistake on the command line (or in ``$NAMEWIRE_NAMESERVICE``) is
one line, ``namewire: error: ...``, on stderr, exit status 2; a failure while running (the name
service is unreachable, the remote function raised) is one line too, exit status 1; Ctrl-C is
status 130. A new subcommand gets this by:

- being added with ``commands.add_parser(...)``: the parser is a `Parser`, whose argparse errors
  are one line that points at ``--help``;
- ``type=address`` on any option that takes an address URL (one-line error, ``tcp://`` hint);
- `nameservice_url` for the name service address (it says when a bad value came from the
  environment);
- `run_command` around the coroutine that does the work, and `fail` for anything else it refuses.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Coroutine
from typing import Any, NoReturn

from ..errors import NamewireError
from ..registry import DEFAULT_NAMESERVICE, check_nameservice_url
from ..transport import parse_address

__all__ = [
    "NAMESERVICE_ENV",
    "Parser",
    "add_logging_options",
    "add_nameservice_option",
    "address",
    "fail",
    "nameservice_url",
    "run_command",
    "setup_logging",
]

log = logging.getLogger("namewire.cli")

NAMESERVICE_ENV = "NAMEWIRE_NAMESERVICE"

# host:port or [v6]:port written without a scheme: the usual slip, answered with the tcp:// form.
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):\d+$")

USAGE, FAILED, INTERRUPTED = 2, 1, 130


def fail(message: str, status: int = USAGE) -> NoReturn:
    """Print ``namewire: error: message`` on stderr and exit with ``status`` (2: usage)."""
    print(f"namewire: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(status)


class Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line in namewire's style, exit status 2.

    Subparsers made with ``add_subparsers().add_parser`` are of the same class.
    """

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see `{self.prog} --help`)")


def address_problem(text: str, exc: ValueError) -> str:
    """Why ``text`` is not an address, with the ``tcp://`` form when a scheme was left out."""
    if "://" not in text and _HOST_PORT.match(text):
        return f"{text!r} is not an address URL; write tcp://{text}"
    return str(exc)


def address(text: str) -> str:
    """argparse ``type=`` for an address URL: checked here, so a typo is a one-line usage error."""
    try:
        parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(address_problem(text, exc)) from None
    return text


def nameservice_address(text: str) -> str:
    """argparse ``type=`` for a name-service URL: a namewire address, or etcd:// / etcds://."""
    try:
        return check_nameservice_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(address_problem(text, exc)) from None


def add_nameservice_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nameservice",
        metavar="URL",
        type=nameservice_address,
        default=None,
        help=f"name service address (default: ${NAMESERVICE_ENV} or {DEFAULT_NAMESERVICE})",
    )


def nameservice_url(args: argparse.Namespace) -> str:
    """The name service address: ``--nameservice``, else ``$NAMEWIRE_NAMESERVICE``, else the
    default. A bad value in the environment is a usage error that says where it came from."""
    if args.nameservice:
        return str(args.nameservice)
    from_env = os.environ.get(NAMESERVICE_ENV)
    if not from_env:
        return DEFAULT_NAMESERVICE
    try:
        check_nameservice_url(from_env)
    except ValueError as exc:
        fail(f"${NAMESERVICE_ENV} (from the environment): {address_problem(from_env, exc)}")
    return from_env


def run_command(coro: Coroutine[Any, Any, Any]) -> int:
    """Run a command's coroutine; a `NamewireError` becomes one line and status 1, Ctrl-C 130."""
    from .. import runtime

    finished = []

    async def work() -> None:
        await coro
        finished.append(True)  # not reached when a signal stopped it

    try:
        runtime.run(work())
    except NamewireError as exc:
        fail(f"{type(exc).__name__}: {exc}", FAILED)
    except KeyboardInterrupt:
        return INTERRUPTED
    return 0 if finished else INTERRUPTED


def add_logging_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("logging")
    group.add_argument("--log-level", default="INFO", metavar="LEVEL",
                       help="DEBUG, INFO, WARNING or ERROR (default: INFO); DEBUG adds "
                            "connections, look-ups and failed calls")
    group.add_argument("--log-file", metavar="PATH",
                       help="write the log here, rotated at --log-rotate-mb (default: stderr)")
    group.add_argument("--log-format", choices=("text", "json"), default="text",
                       help="text for people, json for machines (one object per line)")
    group.add_argument("--log-rotate-mb", type=float, default=64.0, metavar="MB",
                       help="rotate the log file when it reaches this size (default: 64)")


def setup_logging(args: argparse.Namespace) -> None:
    from ..runtime import configure_logging

    try:
        configure_logging(
            level=args.log_level,
            file=args.log_file,
            format=args.log_format,
            rotate_bytes=int(args.log_rotate_mb * 1024 * 1024) if args.log_file else 0,
        )
    except (ValueError, OSError) as exc:
        fail(f"bad logging options: {exc}")

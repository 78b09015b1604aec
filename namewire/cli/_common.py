"""Options and helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import NoReturn

from ..registry import default_nameservice

__all__ = ["add_logging_options", "add_nameservice_option", "fail", "setup_logging"]

log = logging.getLogger("namewire.cli")


def add_nameservice_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nameservice",
        metavar="URL",
        default=None,
        help="name service address (default: $NAMEWIRE_NAMESERVICE or tcp://127.0.0.1:8010)",
    )


def nameservice_url(args: argparse.Namespace) -> str:
    return str(args.nameservice or default_nameservice())


def add_logging_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("logging")
    group.add_argument("--log-level", default="INFO", metavar="LEVEL",
                       help="DEBUG, INFO, WARNING or ERROR (default: INFO)")
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


def fail(message: str, status: int = 2) -> NoReturn:
    """Print ``namewire: error: message`` and exit with ``status``."""
    print(f"namewire: error: {message}", file=sys.stderr)
    raise SystemExit(status)

"""What this install runs on: ``namewire --version`` and the line a service logs at start."""

from __future__ import annotations

import importlib
import os
import sys

__all__ = ["socket_implementation", "version_text"]


def socket_implementation() -> str:
    """Which stream sockets this process uses and, when not the C reactor, why not."""
    if sys.platform != "linux":
        return f"pure-asyncio sockets (the C reactor is Linux-only; this is {sys.platform})"
    if os.environ.get("NAMEWIRE_NATIVE", "1") == "0":
        return "pure-asyncio sockets (C reactor turned off by NAMEWIRE_NATIVE=0)"
    try:
        importlib.import_module("namewire.transport._native")
    except ImportError as exc:
        why = "not built at install" if isinstance(exc, ModuleNotFoundError) else str(exc)
        return (f"pure-asyncio sockets (C reactor {why}: reinstall with a C compiler, gcc, "
                "to build it)")
    return "C reactor"


def version_text() -> str:
    from .. import __version__

    python = sys.version.split()[0]
    return f"namewire {__version__} (Python {python}, sockets: {socket_implementation()})"

"""What the name service accepts in a registration, checked before anything is stored.

A registration is read by every node that looks the name up and by ``namewire ls``, so one that
cannot be shown (bytes in its metadata used to break ``namewire ls --json`` for everyone while it
lived) or that is absurdly large is refused with a `ValueError` naming the problem; the caller gets
it as a `RemoteError`.
"""

from __future__ import annotations

import json
import re

from ..registry import Registration
from ..registry._protocol import NAMESERVICE_NAME

__all__ = [
    "MAX_ADDRESSES",
    "MAX_FUNCTIONS",
    "MAX_METADATA_BYTES",
    "check_registration",
]

# Printable, no white space, 1 to 200 characters: names appear in logs, tables and URLs.
_NAME = re.compile(r"[^\s\x00-\x1f\x7f]{1,200}")
MAX_METADATA_BYTES = 64 * 1024
MAX_ADDRESSES = 32
MAX_FUNCTIONS = 10_000
_MAX_ADDRESS_CHARS = 1000


def check_registration(registration: Registration) -> None:
    """Raise ValueError unless ``registration`` may be stored (see the module docstring)."""
    name = registration.name
    if name == NAMESERVICE_NAME:
        raise ValueError(f"the name {name!r} is reserved for the name service itself")
    if not _NAME.fullmatch(name):
        raise ValueError(f"{name[:60]!r} is not a valid service name (1 to 200 printable "
                         "characters, no white space)")
    if len(registration.addresses) > MAX_ADDRESSES:
        raise ValueError(f"{len(registration.addresses)} addresses; at most {MAX_ADDRESSES}")
    for address in registration.addresses:
        if len(address) > _MAX_ADDRESS_CHARS or not _NAME.fullmatch(address[:200]):
            raise ValueError(f"address {address[:60]!r} is not a URL a peer could use")
    functions = (*registration.functions, *registration.idempotent)
    if len(functions) > MAX_FUNCTIONS:
        raise ValueError(f"{len(functions)} functions; at most {MAX_FUNCTIONS}")
    for func in functions:
        if not _NAME.fullmatch(func):
            raise ValueError(f"{func[:60]!r} is not a valid function name (1 to 200 printable "
                             "characters, no white space)")
    try:
        size = len(json.dumps(registration.metadata, allow_nan=False).encode())
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata of {name!r} must be JSON (text, numbers, lists, maps): {exc}"
                         ) from None
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"{size} bytes of metadata exceed the limit of {MAX_METADATA_BYTES}")

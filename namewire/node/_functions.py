"""The remote functions a node provides."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..transport import Session

__all__ = ["Caller", "FunctionTable", "RemoteFunction"]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who made the current call: passed first to functions registered with ``with_caller=True``.

    ``session`` is the connection the call came on; None when the node called itself.
    """

    name: str
    session: Session | None


@dataclass(frozen=True, slots=True)
class RemoteFunction:
    name: str
    fn: Callable[..., Any]
    is_async: bool
    idempotent: bool
    with_caller: bool


class FunctionTable:
    """Name -> `RemoteFunction`. Registration happens before the node serves, lookups on every call."""

    def __init__(self) -> None:
        self.by_name: dict[str, RemoteFunction] = {}
        # The plain ones (synchronous, no Caller): what a connection may answer without the node
        # (the C reactor's direct calls; see Node._refresh_direct).
        self.plain: dict[str, Callable[..., Any]] = {}

    def add(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        idempotent: bool = False,
        with_caller: bool = False,
    ) -> RemoteFunction:
        if not callable(fn):
            raise TypeError(f"a remote function must be callable, not {type(fn).__name__}")
        fname = name or getattr(fn, "__name__", None)
        if not fname or not isinstance(fname, str):
            raise ValueError(f"cannot tell the name of {fn!r}; pass name=")
        if fname in self.by_name:
            raise ValueError(f"remote function {fname!r} is already registered")
        entry = RemoteFunction(
            fname, fn, inspect.iscoroutinefunction(fn), idempotent, with_caller
        )
        self.by_name[fname] = entry
        if not entry.is_async and not with_caller:
            self.plain[fname] = fn
        return entry

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self.by_name))

    def idempotent_names(self) -> tuple[str, ...]:
        return tuple(sorted(n for n, f in self.by_name.items() if f.idempotent))

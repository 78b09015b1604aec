"""Who is running: the node's name and the light process's name, as context variables.

Both travel with asyncio's context copying, so a task started inside a node or a light process keeps the
names of its parent. The logging filter reads them on the thread that logs, before the record is queued.
"""

from __future__ import annotations

from contextvars import ContextVar, Token

__all__ = [
    "current_node_name",
    "current_process_name",
    "reset_node_name",
    "set_default_node_name",
    "set_node_name",
]

_node_name: ContextVar[str | None] = ContextVar("namewire_node_name", default=None)
_process_name: ContextVar[str | None] = ContextVar("namewire_process_name", default=None)
_default_node_name: str | None = None

NO_NAME = "-"


def set_node_name(name: str | None) -> Token[str | None]:
    """Name the node for the current context and every task and light process started from it.

    Returns a token; `reset_node_name` with it restores the previous name. Code running in a context
    created before this call (other threads, older tasks) sees the process-wide default set by
    `set_default_node_name` instead.
    """
    return _node_name.set(name)


def reset_node_name(token: Token[str | None]) -> None:
    """Undo the `set_node_name` call that returned ``token``; ValueError if made in another context."""
    _node_name.reset(token)


def set_default_node_name(name: str | None) -> None:
    """The node name used where no context set one: other threads, tasks started before the node.

    A process that hosts one node sets both; a test hosting two nodes in one process relies on the
    context variable and leaves the default alone.
    """
    global _default_node_name
    _default_node_name = name


def current_node_name() -> str:
    """The node name of the current context, else the process-wide default, else ``"-"``."""
    return _node_name.get() or _default_node_name or NO_NAME


def current_process_name() -> str:
    """The name given to `spawn` for the light process running now, else ``"-"``."""
    return _process_name.get() or NO_NAME


def _set_process_name(name: str) -> Token[str | None]:
    return _process_name.set(name)

"""Supervisors: a group of light processes with a policy for when one of them fails.

Policies (the names and meanings follow Erlang/OTP supervisors):

``one_for_one``
    A child that raises is restarted alone, under the same name, with the same function and arguments.
``one_for_all``
    A child that raises makes the supervisor cancel every sibling, wait for them, then restart all of
    the group's live children in their start order.
``cancel_siblings``
    No restarts: a child that raises cancels its siblings and the body of the ``async with`` block,
    and the supervisor raises `SupervisorFailed` (`asyncio.TaskGroup` semantics).

Under both restart policies the restart intensity is bounded: more than ``max_restarts`` restarts within
``within`` seconds (counted over the whole group) and the supervisor gives up, exactly as under
``cancel_siblings``, and logs it at ERROR. ``backoff`` delays each restart: ``backoff`` seconds for
the first restart within the window, doubling for each further one, at most ``max_backoff``. A child that returns, or is cancelled from outside, is not restarted: it leaves the
group. Leaving the ``async with`` block waits until every child has left the group.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, Literal, Self

from ..errors import SupervisorFailed
from ._spawn import Process, spawn

__all__ = ["Policy", "Supervisor", "SupervisorFailed"]

Policy = Literal["one_for_one", "one_for_all", "cancel_siblings"]
_POLICIES: tuple[Policy, ...] = ("one_for_one", "one_for_all", "cancel_siblings")

logger = logging.getLogger("namewire.runtime")


class _Child:
    __slots__ = ("args", "fn", "name", "process")

    def __init__(self, fn: Any, args: tuple[Any, ...], name: str | None) -> None:
        self.fn = fn
        self.args = args
        self.name = name
        self.process: Process[Any] | None = None


class Supervisor:
    """An async context manager that runs light processes under a restart policy.

    .. code-block:: python

        async with Supervisor("one_for_one", max_restarts=3, within=5.0) as sup:
            sup.spawn(worker, queue, name="worker-1")

    ``policy`` is ``"one_for_one"``, ``"one_for_all"`` or ``"cancel_siblings"`` (see the module doc).
    On leaving the block the supervisor waits for all children; if it gave up, it cancels the rest
    (and the block's body, if still running) and raises `SupervisorFailed` from the child's error. An
    exception or cancellation of the body cancels every child and propagates unchanged.
    """

    def __init__(
        self,
        policy: Policy = "one_for_one",
        *,
        max_restarts: int = 3,
        within: float = 5.0,
        backoff: float = 0.0,
        max_backoff: float = 5.0,
        name: str = "supervisor",
    ) -> None:
        if policy not in _POLICIES:
            raise ValueError(f"unknown supervisor policy {policy!r}; expected one of {_POLICIES}")
        if max_restarts < 0 or within <= 0:
            raise ValueError(f"need max_restarts >= 0 and within > 0, got {max_restarts}, {within}")
        self.policy: Policy = policy
        self.max_restarts = max_restarts
        self.within = within
        if backoff < 0 or max_backoff < backoff:
            raise ValueError(f"need 0 <= backoff <= max_backoff, got {backoff}, {max_backoff}")
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.name = name
        self.restarts = 0
        self._children: list[_Child] = []
        self._restart_times: deque[float] = deque()
        self._events: asyncio.Queue[tuple[_Child, Process[Any]]] = asyncio.Queue()
        self._idle = asyncio.Event()
        self._failure: SupervisorFailed | None = None
        self._parent: asyncio.Task[Any] | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._in_body = False
        self._cancelled_parent = False
        self._closed = False

    @property
    def children(self) -> list[Process[Any]]:
        """The running children, in start order."""
        return [c.process for c in self._children if c.process is not None]

    def spawn(
        self,
        coro_or_fn: Callable[..., Coroutine[Any, Any, Any]] | Coroutine[Any, Any, Any],
        /,
        *args: Any,
        name: str | None = None,
    ) -> Process[Any]:
        """Start a child light process (see `namewire.spawn`) and return its current `Process`.

        After a restart the child runs in a new `Process` under the same name; `children` lists the
        current ones. Raises RuntimeError outside the ``async with`` block or after the supervisor gave
        up, TypeError for a bare coroutine under a restart policy (a coroutine cannot be run twice).
        """
        if self._parent is None or self._closed or self._failure is not None:
            raise RuntimeError(f"supervisor {self.name!r} is not running")
        if asyncio.iscoroutine(coro_or_fn) and self.policy != "cancel_siblings":
            coro_or_fn.close()
            raise TypeError(
                f"supervisor {self.name!r} ({self.policy}) restarts children, so it needs an async "
                "function and its arguments, not a coroutine"
            )
        child = _Child(coro_or_fn, args, name)
        self._children.append(child)
        self._idle.clear()
        return self._start(child)

    def _start(self, child: _Child) -> Process[Any]:
        process: Process[Any] = spawn(child.fn, *child.args, name=child.name)
        child.name = process.name
        child.process = process
        process.task.add_done_callback(lambda _: self._events.put_nowait((child, process)))
        return process

    async def __aenter__(self) -> Self:
        if self._parent is not None:
            raise RuntimeError(f"supervisor {self.name!r} entered twice")
        self._parent = asyncio.current_task()
        if self._parent is None:
            raise RuntimeError("Supervisor must be used inside a task")
        self._in_body = True
        self._monitor = asyncio.get_running_loop().create_task(
            self._watch(), name=f"{self.name}-monitor"
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._in_body = False
        ours = self._cancelled_parent and isinstance(exc, asyncio.CancelledError)
        if exc is not None and not ours:
            await self._close()
            return
        if exc is None and self._failure is None and self._children:
            try:
                await self._idle.wait()
            except asyncio.CancelledError:
                await self._close()
                raise
        await self._close()
        if self._failure is not None:
            if self._cancelled_parent and self._parent is not None and self._parent.uncancel() > 0:
                return  # someone else cancelled us too: their cancellation wins
            raise self._failure from self._failure.error

    async def _close(self) -> None:
        self._closed = True
        await self._cancel_children(self._children)
        if self._monitor is not None and not self._monitor.done():
            self._monitor.cancel()
            await asyncio.wait([self._monitor])

    @staticmethod
    async def _cancel_children(children: list[_Child]) -> None:
        tasks = [c.process.task for c in children if c.process is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    async def _watch(self) -> None:
        while True:
            child, process = await self._events.get()
            if process is not child.process:
                continue  # an incarnation replaced by a one_for_all restart
            task = process.task
            error = None if task.cancelled() else task.exception()
            if error is None or self._closed:
                child.process = None
                self._children.remove(child)
                if not self._children:
                    self._idle.set()
                continue
            if self.policy == "cancel_siblings":
                await self._give_up(child, error, "failed")
                return
            if not self._may_restart():
                await self._give_up(
                    child,
                    error,
                    f"failed after {self.max_restarts} restarts within {self.within} s; giving up",
                )
                return
            self.restarts += 1
            delay = self._delay()
            logger.warning(
                "supervisor %r (%s): restarting %r%s after %s: %s",
                self.name,
                self.policy,
                child.name,
                f" in {delay:.2f} s" if delay else "",
                type(error).__name__,
                error,
            )
            if delay:
                await asyncio.sleep(delay)
            if self.policy == "one_for_one":
                self._start(child)
            else:
                await self._cancel_children([c for c in self._children if c is not child])
                for each in list(self._children):
                    self._start(each)

    def _may_restart(self) -> bool:
        now = asyncio.get_running_loop().time()
        times = self._restart_times
        while times and now - times[0] > self.within:
            times.popleft()
        if len(times) >= self.max_restarts:
            return False
        times.append(now)
        return True

    def _delay(self) -> float:
        if not self.backoff:
            return 0.0
        recent = len(self._restart_times)  # this restart included
        return float(min(self.backoff * 2 ** (recent - 1), self.max_backoff))

    async def _give_up(self, child: _Child, error: BaseException, why: str) -> None:
        self._failure = SupervisorFailed(
            f"supervisor {self.name!r} ({self.policy}): child {child.name!r} {why} "
            f"({type(error).__name__}: {error})",
            self.name,
            child.name or "?",
            error,
        )
        logger.error("%s", self._failure)
        self._closed = True
        if self._in_body and self._parent is not None and not self._parent.done():
            self._cancelled_parent = True
            self._parent.cancel()
        await self._cancel_children(self._children)
        self._idle.set()

"""Starting and stopping a node: waiting for the name service, and for the calls in flight.

Services are often started together (``namewire nameservice & namewire run app.py &``), so the
name service may come up a moment after the service. A node that is already registered reconnects
by itself forever (the registry's keeper); at start it waits too, with backoff, up to a bound.
"""

from __future__ import annotations

import asyncio
import logging

from ..errors import RegistryUnavailable
from ..registry import Registry

__all__ = ["DEFAULT_REGISTRY_WAIT", "start_registry", "wait_for_calls"]

log = logging.getLogger("namewire.node")

DEFAULT_REGISTRY_WAIT = 10.0
"""Seconds `Node.start` keeps trying to reach the name service before it gives up."""

_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 1.0


async def start_registry(registry: Registry, wait: float, who: str) -> None:
    """``registry.start()``, tried again with backoff (50 ms doubling to 1 s) for ``wait`` seconds.

    Raises the last `RegistryUnavailable`, saying how long it tried; ``wait`` 0 tries once.
    """
    loop = asyncio.get_running_loop()
    began = loop.time()
    backoff = _BACKOFF_FIRST
    attempts = 0
    while True:
        attempts += 1
        try:
            await registry.start()
        except RegistryUnavailable as exc:
            elapsed = loop.time() - began
            if elapsed >= wait:
                if attempts == 1:
                    raise
                raise RegistryUnavailable(
                    f"{exc}; gave up after trying {attempts} times over {elapsed:.1f}s"
                ) from None
            if attempts == 1:
                log.info("%s: waiting up to %.3gs for the name service: %s", who, wait, exc)
            else:
                log.debug("%s: still no name service after %.1fs (attempt %d)", who, elapsed,
                          attempts)
            await asyncio.sleep(min(backoff, wait - elapsed))
            backoff = min(backoff * 2, _BACKOFF_MAX)
            continue
        if attempts > 1:
            log.info("%s: reached the name service after %.1fs", who, loop.time() - began)
        return


async def wait_for_calls(
    who: str, running: list[asyncio.Task[object]], grace: float, hurry: asyncio.Event
) -> None:
    """Give the calls in flight up to ``grace`` seconds, or until ``hurry`` is set; say so."""
    log.info("%s stopping, waiting up to %.3gs for %d call%s in flight (a second Ctrl-C or "
             "SIGTERM stops the wait)", who, grace, len(running), "" if len(running) == 1 else "s")
    loop = asyncio.get_running_loop()
    began = loop.time()
    everything = asyncio.ensure_future(asyncio.wait(running))
    hurried = asyncio.ensure_future(hurry.wait())
    try:
        await asyncio.wait([everything, hurried], timeout=grace,
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        everything.cancel()
        hurried.cancel()
    left = sum(not task.done() for task in running)
    if left:
        why = "told to stop waiting" if hurry.is_set() else "grace period over"
        log.warning("%s: %s after %.1fs; cancelling %d call%s still running", who, why,
                    loop.time() - began, left, "" if left == 1 else "s")

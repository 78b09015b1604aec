"""`run_worker`: a worker as a light process, so that a `Supervisor` can restart it by its policy."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from ._worker import StartMethod, fork

__all__ = ["run_worker"]


async def run_worker(
    target: Callable[..., Coroutine[Any, Any, Any]],
    /,
    *args: Any,
    name: str | None = None,
    thread: bool = False,
    start_method: StartMethod = "spawn",
    grace: float = 5.0,
    **kwargs: Any,
) -> int:
    """Start ``target`` in a worker (see `fork`) and wait until it ends.

    Returns 0 when the worker's target returned; raises `WorkerExited` (exit code or signal) for
    any other end, which is what makes a `Supervisor` restart it:

    .. code-block:: python

        async with Supervisor("one_for_one", max_restarts=3, within=10, backoff=0.1) as sup:
            sup.spawn(run_worker, crunch, jobs, results, name="cruncher")

    The `WorkerChannel` arguments are linked again to each new incarnation. Cancelling stops the
    worker (SIGTERM, SIGKILL after ``grace`` seconds) and reaps it.
    """
    worker = await fork(target, *args, name=name, thread=thread, start_method=start_method,
                        **kwargs)
    try:
        code = await worker.wait()
    finally:
        if worker.is_alive():
            await worker.stop(grace)
    if code != 0:
        raise worker.exit_error()
    return code

"""`FailureLog`: a service logs the failures of its remote functions, without flooding the log.

The caller gets the exception (`RemoteError`); the service's own log gets it too, with the
function, the caller and the traceback, because that is where the bug is. A function that fails
on every call would write one traceback per call, so each function gets ``burst`` records per
``period`` seconds; the failures beyond that are counted and the count is logged with the next
record of that function.
"""

from __future__ import annotations

import logging
import time

__all__ = ["FailureLog"]

log = logging.getLogger("namewire.node")


class FailureLog:
    """Rate-limited ERROR records of remote functions that raised or returned unsendable results."""

    def __init__(
        self,
        *,
        burst: int = 5,
        period: float = 10.0,
        refusals: tuple[type[BaseException], ...] = (),
    ) -> None:
        """``refusals``: exception types that are answers, not bugs (the name service's
        `NameTaken`): logged at INFO in one line, without a traceback."""
        self.burst = burst
        self.refusals = refusals
        self.period = period
        self._windows: dict[str, list[float]] = {}  # function -> [window start, logged, skipped]

    def failed(
        self, node: str, func: str, caller: str | None, exc: BaseException, what: str = "raised"
    ) -> None:
        """Log that ``func`` of ``node``, called by ``caller``, ``what`` (raised...) ``exc``."""
        if isinstance(exc, self.refusals):
            log.info("%s: refused %s() to %r: %s", node, func, caller, exc)
            return
        now = time.monotonic()
        window = self._windows.get(func)
        skipped = 0
        if window is None or now - window[0] >= self.period:
            skipped = int(window[2]) if window is not None else 0
            window = self._windows[func] = [now, 0, 0]
        if window[1] >= self.burst:
            window[2] += 1
            return
        window[1] += 1
        more = (f" ({skipped} more failures of {func!r} were not logged in the "
                f"{self.period:g}s before)") if skipped else ""
        log.error("%s: remote function %r called by %r %s %s: %s%s", node, func, caller,
                  what, type(exc).__name__, exc, more, exc_info=exc)

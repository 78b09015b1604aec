"""The trace context of the running code: read it, or start a trace for the calls of a block."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ._node import Serving, new_request_id, serving
from ._tracing import new_traceparent

__all__ = ["current_traceparent", "trace_context"]


def current_traceparent() -> str | None:
    """The W3C traceparent that calls made here carry: the served call's, or `trace_context`'s."""
    context = serving.get()
    return context.trace if context is not None else None


@contextlib.contextmanager
def trace_context(traceparent: str | None = None) -> Iterator[str]:
    """Calls made in the block carry ``traceparent`` (a new trace when None), and one request id.

    For tracing without OpenTelemetry: the trace id then travels through every nested call and
    shows in the dashboard's errors. Inside a served call, the block keeps its deadline.
    """
    trace = traceparent or new_traceparent()
    outer = serving.get()
    if outer is None:
        token = serving.set(Serving(None, new_request_id(), trace))
    else:
        token = serving.set(outer._replace(trace=trace))
    try:
        yield trace
    finally:
        serving.reset(token)

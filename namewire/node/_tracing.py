"""W3C trace context for calls, and OpenTelemetry spans when an SDK is set up.

A call carries its W3C ``traceparent`` in its metadata (key ``"t"``). Without OpenTelemetry a node
only passes the caller's traceparent on, unchanged, to the calls it makes while serving (what
W3C Trace Context asks of a participant that records nothing); `trace_context` starts a trace.
With ``opentelemetry-api`` installed and a tracer provider set (the SDK, before `Node.start`), the
node records a CLIENT span per call made and a SERVER span per call served, named
``{service}/{function}`` with the OpenTelemetry RPC attributes, and the traceparent it sends is
its own client span's, so the spans of a chain of nested calls form one tree.
"""

from __future__ import annotations

import random
from typing import Any

__all__ = [
    "end_span",
    "new_traceparent",
    "opentelemetry_tracer",
    "start_client_span",
    "start_server_span",
    "trace_id_of",
    "traceparent_of",
]


def new_traceparent() -> str:
    """A fresh traceparent: version 00, random trace and parent ids, sampled."""
    return f"00-{random.getrandbits(128) or 1:032x}-{random.getrandbits(64) or 1:016x}-01"


def trace_id_of(traceparent: str | None) -> str:
    """The trace id (32 hex digits) of a traceparent, or "" if it is not one."""
    if not traceparent or len(traceparent) < 55 or traceparent[2] != "-":
        return ""
    return traceparent[3:35]


def opentelemetry_tracer() -> Any | None:
    """namewire's tracer if ``opentelemetry-api`` is installed and a tracer provider is set; else
    None (and calls cost nothing extra)."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    return provider.get_tracer("namewire")


def _parent(traceparent: str | None) -> Any:
    """The OpenTelemetry context a span starts in: the current span if there is one, else the
    remote parent named by ``traceparent``."""
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    if trace.get_current_span().get_span_context().is_valid or not traceparent:
        return None
    return TraceContextTextMapPropagator().extract({"traceparent": traceparent})


def start_client_span(tracer: Any, service: str, func: str, traceparent: str | None) -> Any:
    from opentelemetry.trace import SpanKind

    return tracer.start_span(
        f"{service}/{func}", context=_parent(traceparent), kind=SpanKind.CLIENT,
        attributes={"rpc.system": "namewire", "rpc.service": service, "rpc.method": func},
    )


def start_server_span(
    tracer: Any, service: str, func: str, caller: str | None, traceparent: str | None
) -> Any:
    from opentelemetry import context
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    # A served call's parent is the caller's span only: never whatever span the loop's context holds.
    parent = (TraceContextTextMapPropagator().extract({"traceparent": traceparent})
              if traceparent else context.Context())
    return tracer.start_span(
        f"{service}/{func}", context=parent, kind=SpanKind.SERVER,
        attributes={"rpc.system": "namewire", "rpc.service": service, "rpc.method": func,
                    "namewire.caller": caller or ""},
    )


def traceparent_of(span: Any) -> str:
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def attach_span(span: Any) -> None:
    """Make ``span`` current in this context (the task's copy, so nothing needs detaching)."""
    from opentelemetry import context, trace

    context.attach(trace.set_span_in_context(span))


def end_span(span: Any, error: BaseException | None) -> None:
    if error is not None:
        from opentelemetry.trace import Status, StatusCode

        span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
    span.end()

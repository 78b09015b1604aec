"""Run by test_tracing.py in a process of its own (a tracer provider can be set once per process):
a chain of nested calls A -> B -> C under an OpenTelemetry SDK with an in-memory exporter; prints
the finished spans as JSON."""

from __future__ import annotations

import asyncio
import json
import sys

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import namewire

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)


async def main(nameservice: str) -> None:
    b, c = namewire.Node("B"), namewire.Node("C")

    @b.function
    async def relay() -> str:
        return str(await b.rpc_call("C", "leaf"))

    @c.function
    def leaf() -> str:
        return "leaf"

    @c.function
    def broken() -> None:
        raise KeyError("nope")

    a = namewire.Node("A")
    async with c.serve(nameservice=nameservice), b.serve(nameservice=nameservice), \
            a.serve(nameservice=nameservice, listen=None):
        with trace.get_tracer("test").start_as_current_span("request"):
            assert await a.rpc_call("B", "relay") == "leaf"
        try:
            await a.rpc_call("C", "broken")
        except namewire.RemoteError:
            pass
    spans = [
        {
            "name": s.name, "kind": s.kind.name, "trace": f"{s.context.trace_id:032x}",
            "id": f"{s.context.span_id:016x}",
            "parent": f"{s.parent.span_id:016x}" if s.parent else None,
            "attributes": dict(s.attributes or {}), "status": s.status.status_code.name,
        }
        for s in exporter.get_finished_spans()
    ]
    print(json.dumps(spans))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))

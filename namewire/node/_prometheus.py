"""The Prometheus text endpoint of a node (``Node(metrics="tcp://127.0.0.1:9100")``).

The series are rendered by ``prometheus_client`` from the node's `Metrics` at scrape time (a
custom collector: nothing is counted twice, and recording stays plain arithmetic). The HTTP server
is a small asyncio one on the node's loop rather than ``prometheus_client``'s thread, so a scrape
reads the counters on the thread that writes them.

Names follow the OpenTelemetry RPC semantic conventions mapped to Prometheus' (dots to
underscores, the unit as a suffix, ``_total`` on counters): ``rpc.client.duration`` is
``namewire_rpc_client_duration_seconds``, ``rpc.server.duration`` is
``namewire_rpc_server_duration_seconds``; every series has a ``service`` label.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from ..errors import TransportError
from ..runtime._metrics import BUCKETS, SAMPLE_EVERY, SERIES, CallStats, Metrics
from ..transport import parse_address

__all__ = ["MetricsCollector", "MetricsEndpoint", "render"]

log = logging.getLogger("namewire.metrics")


class MetricsCollector:
    """A ``prometheus_client`` collector reading one node's `Metrics`."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        service = m.service
        for side, table, who in (("client", m.made, "peer"), ("server", m.served, "caller")):
            yield from _calls(side, table, who, service)
        for name, value in sorted(m.counters().items()):
            kind, doc = SERIES[name]
            family: Metric
            if kind == "counter":
                family = CounterMetricFamily(f"namewire_{name}", doc, labels=["service"])
            else:
                family = GaugeMetricFamily(f"namewire_{name}", doc, labels=["service"])
            family.add_metric([service], value)
            yield family


def _calls(
    side: str, table: dict[tuple[str, str], CallStats], who: str, service: str
) -> Iterator[Metric]:
    what = "made by" if side == "client" else "served by"
    duration = HistogramMetricFamily(
        f"namewire_rpc_{side}_duration_seconds",
        f"Duration of calls {what} this node (OpenTelemetry rpc.{side}.duration; one call "
        f"in {SAMPLE_EVERY} per function is timed, the calls counter has them all)",
        labels=["service", who, "function"],
    )
    calls = CounterMetricFamily(
        f"namewire_rpc_{side}_calls", f"Calls {what} this node, by outcome",
        labels=["service", who, "function", "outcome"],
    )
    for (peer, func), stats in sorted(table.items()):
        cumulative = 0
        buckets = []
        for bound, n in zip((*BUCKETS, float("inf")), stats.buckets, strict=True):
            cumulative += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        duration.add_metric([service, peer, func], buckets, stats.seconds)
        failed = sum(stats.failed.values())
        calls.add_metric([service, peer, func, "ok"], stats.calls - failed)
        for outcome, n in sorted(stats.failed.items()):
            calls.add_metric([service, peer, func, outcome], n)
    yield duration
    yield calls


def render(metrics: Metrics) -> bytes:
    """The Prometheus text exposition of ``metrics``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MetricsCollector(metrics))
    return generate_latest(registry)


class MetricsEndpoint:
    """An HTTP server answering ``GET /metrics`` (and ``/``) with `render`."""

    def __init__(self, server: asyncio.Server, metrics: Metrics) -> None:
        self._server = server
        self.metrics = metrics

    @property
    def url(self) -> str:
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}/metrics"

    @classmethod
    async def open(cls, url: str, metrics: Metrics) -> MetricsEndpoint:
        """Listen at ``url`` (``tcp://host:port``; port 0 picks one). Raises ValueError for
        another kind of address, `TransportError` when the port cannot be bound."""
        address = parse_address(url)
        if not address.host:
            raise ValueError(f"metrics endpoint {url!r}: give a tcp://host:port address")
        endpoint: MetricsEndpoint | None = None

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            assert endpoint is not None
            await endpoint._serve(reader, writer)

        try:
            server = await asyncio.start_server(handle, address.host, address.port)
        except OSError as exc:
            raise TransportError(f"cannot serve metrics at {url}: {exc.strerror or exc}") from exc
        endpoint = cls(server, metrics)
        log.info("%r: metrics at %s", metrics.service, endpoint.url)
        return endpoint

    async def close(self) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
            status, body, kind = self._answer(head)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode() + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError) as exc:
            log.info("%r: metrics request dropped: %s", self.metrics.service,
                     type(exc).__name__)
        finally:
            writer.close()

    def _answer(self, head: bytes) -> tuple[str, bytes, str]:
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] not in ("GET", "HEAD"):
            return "405 Method Not Allowed", b"only GET /metrics\n", "text/plain"
        path = parts[1].split("?", 1)[0]
        if path not in ("/", "/metrics"):
            return "404 Not Found", f"no {path} here: try /metrics\n".encode(), "text/plain"
        text: Any = render(self.metrics)
        return "200 OK", text, "text/plain; version=0.0.4; charset=utf-8"

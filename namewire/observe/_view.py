"""`ClusterView`: what the dashboard and ``namewire top`` show, gathered by name.

Each `refresh` lists the live services (the registry: addresses, host, functions, lease age), asks
every one for ``namewire.stats`` at once, and turns two successive snapshots into rates: calls/s
served, error rate, p50/p99 over the last interval (from the histogram buckets' differences), the
call graph (each service counts the calls it serves per caller, so the edges caller -> callee come
from the callers' names carried by the connections), and the recent errors of the whole cluster.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

from ..errors import NamewireError
from ..node import STATS_FUNCTION, Node
from ..runtime._metrics import quantile

__all__ = ["ClusterView"]

HISTORY = 60  # points kept per service for the charts


class ClusterView:
    """Polls a cluster through ``node`` (a running node with a registry)."""

    def __init__(self, node: Node, *, timeout: float = 2.0) -> None:
        self.node = node
        self.timeout = timeout
        self._last: dict[str, tuple[float, dict[str, Any]]] = {}
        self._history: dict[str, deque[dict[str, float | None]]] = {}

    async def refresh(self) -> dict[str, Any]:
        """One view of the cluster, as plain data (the dashboard sends it as JSON)."""
        registry = self.node.registry
        if registry is None:
            raise RuntimeError("the cluster view needs a node with a registry")
        # Carried names (a gateway's browser sessions) are no services: they have no stats to ask.
        listed = [s for s in await registry.services()
                  if s.registration.name != self.node.name and not s.registration.via]
        answers = await asyncio.gather(
            *(self._stats(s.registration.name) for s in listed), return_exceptions=False
        )
        now = time.monotonic()
        services: list[dict[str, Any]] = []
        edges: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for info, stats in zip(listed, answers, strict=True):
            reg = info.registration
            row: dict[str, Any] = {
                "name": reg.name, "addresses": list(reg.addresses), "host": reg.host,
                "functions": list(reg.functions), "lease_age": round(info.lease_age, 2),
                "ttl": info.ttl, "reachable": stats is not None,
            }
            if stats is not None:
                row.update(self._rates(reg.name, now, stats))
                edges.extend(row.pop("edges"))
                errors.extend({**e, "service": reg.name} for e in stats["errors"])
            services.append(row)
        gone = set(self._last) - {s["name"] for s in services}
        for name in gone:
            self._last.pop(name, None)
            self._history.pop(name, None)
        errors.sort(key=lambda e: e["time"])
        return {"time": time.time(), "services": services, "edges": edges,
                "errors": errors[-30:]}

    async def _stats(self, name: str) -> dict[str, Any] | None:
        try:
            stats = await self.node.rpc_call(name, STATS_FUNCTION, timeout=self.timeout)
        except (NamewireError, OSError):
            return None  # left, or not answering: shown as unreachable until the registry drops it
        return stats if isinstance(stats, dict) else None

    def _rates(self, name: str, now: float, stats: dict[str, Any]) -> dict[str, Any]:
        previous = self._last.get(name)
        self._last[name] = (now, stats)
        served = _by_key(stats["served"], "caller")
        before = _by_key(previous[1]["served"], "caller") if previous else {}
        window = now - previous[0] if previous else 0.0
        calls = failed = 0
        buckets = [0] * len(stats["buckets"]) + [0]
        edges = []
        for key, row in served.items():
            old = before.get(key)
            n = row["count"] - (old["count"] if old else 0)
            f = sum(row["failed"].values()) - (sum(old["failed"].values()) if old else 0)
            for i, b in enumerate(row["buckets"]):
                buckets[i] += b - (old["buckets"][i] if old else 0)
            calls += n
            failed += f
            caller, func = key
            if caller:
                edges.append({"from": caller, "to": name, "function": func, "total": row["count"],
                              "rate": round(n / window, 1) if window else None})
        if not previous:
            # First sight: no interval yet; show totals, rates from the next refresh.
            buckets = [sum(r["buckets"][i] for r in served.values())
                       for i in range(len(stats["buckets"]) + 1)]
        rate = round(calls / window, 1) if window else None
        p50, p99 = quantile(buckets, 0.5), quantile(buckets, 0.99)
        point = {"rate": rate, "p50": p50, "p99": p99,
                 "error_rate": round(failed / calls, 4) if calls else 0.0}
        history = self._history.setdefault(name, deque(maxlen=HISTORY))
        if previous:
            history.append(point)
        counters = stats["counters"]
        return {
            **point,
            "served_total": sum(r["count"] for r in served.values()),
            "made_total": sum(r["count"] for r in stats["made"]),
            "connections": counters.get("connections", 0),
            "pending_calls": counters.get("pending_calls", 0),
            "mailbox_depth": counters.get("mailbox_depth", 0),
            "history": list(history),
            "edges": edges,
        }


def _by_key(rows: list[dict[str, Any]], who: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r[who], r["function"]): r for r in rows}

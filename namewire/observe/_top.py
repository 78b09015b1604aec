"""``namewire top``: the dashboard's view in the terminal, drawn with rich."""

from __future__ import annotations

import datetime as dt
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

__all__ = ["render_top"]

_BARS = " ▁▂▃▄▅▆▇█"


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1e6:.0f} µs" if seconds < 0.001 else f"{seconds * 1e3:.1f} ms"


def _spark(values: list[float | None], width: int = 20) -> str:
    points = [v or 0.0 for v in values[-width:]]
    top = max(points, default=0.0)
    if top <= 0:
        return ""
    return "".join(_BARS[round(v / top * (len(_BARS) - 1))] for v in points)


def render_top(view: dict[str, Any]) -> Group:
    """The services table, the call graph's edges and the recent errors of one `ClusterView`."""
    when = dt.datetime.fromtimestamp(view["time"]).strftime("%H:%M:%S")
    services = Table(title=f"namewire top: {len(view['services'])} services at {when}",
                     title_justify="left", expand=False)
    for name, justify in (("service", "left"), ("addresses", "left"), ("functions", "left"),
                          ("lease", "right"), ("calls/s", "right"), ("errors", "right"),
                          ("p50", "right"), ("p99", "right"), ("conns", "right"),
                          ("calls/s (last 20)", "left")):
        services.add_column(name, justify=justify)  # type: ignore[arg-type]
    for s in view["services"]:
        lease = f"{s['lease_age']:.1f}s"
        if not s["reachable"]:
            services.add_row(s["name"], "\n".join(s["addresses"]), ", ".join(s["functions"]),
                             lease, Text("not answering", style="red"))
            continue
        rate = "-" if s["rate"] is None else f"{s['rate']:,.1f}"
        failing = Text(f"{s['error_rate'] * 100:.1f}%", style="red" if s["error_rate"] else "")
        services.add_row(
            s["name"], "\n".join(s["addresses"]), ", ".join(s["functions"]), lease, rate, failing,
            _ms(s["p50"]), _ms(s["p99"]), str(s["connections"]),
            _spark([p["rate"] for p in s["history"]]),
        )
    edges = Table(title="calls (caller -> service)", title_justify="left")
    for name in ("caller", "service", "function", "calls/s", "total"):
        edges.add_column(name)
    for e in sorted(view["edges"], key=lambda e: (e["from"], e["to"], e["function"])):
        edges.add_row(e["from"], e["to"], e["function"],
                      "-" if e["rate"] is None else f"{e['rate']:,.1f}", f"{e['total']:,}")
    errors = Table(title="recent errors", title_justify="left")
    for name in ("time", "service", "side", "peer", "function", "outcome", "message"):
        errors.add_column(name)
    for e in view["errors"][-10:]:
        errors.add_row(dt.datetime.fromtimestamp(e["time"]).strftime("%H:%M:%S"), e["service"],
                       e["direction"], e["peer"], e["function"], Text(e["outcome"], style="red"),
                       e["message"])
    return Group(services, edges, errors)

"""Turns the runner's results dict into Markdown, the ratio table, a PNG chart and the README copy.

The results dict (also written as JSON) has one section per benchmark; each row carries its
points keyed by the connection or caller count as a string (JSON keys are strings), and a row or
point that failed carries ``"error"`` instead of numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

README_START = "<!-- latest-results:start -->"
README_END = "<!-- latest-results:end -->"
# Sections this module lays out itself; any other is shown as a generic table.
KNOWN_SECTIONS = ("echo", "rpc", "capacity", "memory", "logging")
SCRIPT_TITLES = {
    "turns": "Both sides busy: early writes against one write per turn (bench/turns.py)",
    "metrics": "Metrics on against off, Plus by name (bench/metrics_overhead.py)",
    "db": "Databases (bench/db_bench.py; docs/db.md)",
    "tls": "RPC over tls:// beside tcp:// (bench/tls_rpc.py; docs/security.md)",
    "handshakes": "Handshakes and echo over TLS (bench/tls_handshakes.py; docs/security.md)",
    "workers": "Workers (bench/workers_bench.py; docs/workers.md)",
}
# Share of a CPU that other work may take during a point before the point is flagged as noisy.
NOISY_CPU = 0.25

# The seed's 2014 echo table (echoes/s), kept beside ours as the heritage ratios.
SEED_ECHO = {
    "luanet": {1: 19_000, 10: 125_000, 100: 120_000, 1000: 80_000},
    "node.js": {1: 27_000, 10: 30_000, 100: 30_000, 1000: 27_000},
    "luvit": {1: 16_500, 10: 74_000, 100: 75_000, 1000: 51_000},
}


def _num(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}"


def _ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "—"
    return f"{a / b:.2f}×"


def _noisy(row: dict[str, Any], conns: int) -> str:
    point = row.get("points", {}).get(str(conns)) or {}
    return " †" if (point.get("other_cpu") or 0) > NOISY_CPU else ""


def _noise_footnote(rows: list[dict[str, Any]], counts: list[int]) -> list[str]:
    if not any(_noisy(row, c) for row in rows for c in counts):
        return []
    return [
        "",
        f"† other processes kept more than {NOISY_CPU:.0%} of a CPU busy during that point: "
        "read it with care (`other_cpu` in the JSON).",
    ]


def _echo_value(row: dict[str, Any], conns: int) -> float | None:
    point = row.get("points", {}).get(str(conns))
    if not point or point.get("error"):
        return None
    return float(point["rps"])


def _rpc_point(row: dict[str, Any], callers: int) -> dict[str, Any] | None:
    point: dict[str, Any] | None = row.get("points", {}).get(str(callers))
    if not point or point.get("error"):
        return None
    return point


def _cell_or_failed(row: dict[str, Any], key: str, text: str) -> str:
    point = row.get("points", {}).get(key)
    if point and point.get("error"):
        return "failed"
    return text


def compute_ratios(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The target ratios: namewire echo against node.js, luv and C; RPC against the best peer."""
    ratios: list[dict[str, Any]] = []
    echo = {row["key"]: row for row in results.get("echo", {}).get("rows", [])}
    nw = echo.get("namewire")
    for ref_key, ref_label in (("node", "node.js"), ("luv", "luv"), ("c_epoll", "C epoll")):
        ref = echo.get(ref_key)
        values: dict[str, float | None] = {}
        for conns in (10, 100, 1000):
            a = _echo_value(nw, conns) if nw else None
            b = _echo_value(ref, conns) if ref else None
            values[str(conns)] = round(a / b, 3) if a and b else None
        ratios.append({"name": f"echo namewire / {ref_label}", "values": values})

    rpc = results.get("rpc")
    if rpc:
        ratios.append(_rpc_ratio(rpc))
        ratios.extend(_probe_ratios(rpc))
    ratios.extend(_target_ratios(results))
    for row in results.get("memory", {}).get("rows", []):
        if row.get("key") == "namewire" and "per_conn_bytes" in row:
            ratios.append(
                {"name": "RSS per idle namewire connection", "bytes": row["per_conn_bytes"]}
            )
    return ratios


def _rpc_ratio(rpc: dict[str, Any], at: int | None = None) -> dict[str, Any]:
    """namewire's calls/s at ``at`` callers (default the most) against the best peer's."""
    rows = {row["key"]: row for row in rpc.get("rows", [])}
    top = at or max(rpc.get("callers", [1000]) or [1000])
    nw_point = _rpc_point(rows["namewire"], top) if "namewire" in rows else None
    best_label, best_value = None, None
    for key, row in rows.items():
        if key == "namewire" or row.get("reference"):
            continue
        point = _rpc_point(row, top)
        if point and (best_value is None or point["calls_per_s"] > best_value):
            best_label, best_value = row["label"], point["calls_per_s"]
    return {
        "name": f"RPC calls/s namewire / best peer at {top} callers",
        "best_peer": best_label,
        "value": round(nw_point["calls_per_s"] / best_value, 3)
        if nw_point and best_value
        else None,
    }


def _target_ratios(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 14's targets: server capacity against the C RPC server, calls by name against the
    best peer at 100 callers too, and one caller's p50 against the C echo's round trip."""
    out: list[dict[str, Any]] = []
    cap = {row["key"]: row for row in results.get("capacity", {}).get("rows", [])}
    if "namewire" in cap and "c_rpc" in cap:
        for load in results["capacity"]["loads"]:
            a = _rpc_point(cap["namewire"], load)  # type: ignore[arg-type]
            b = _rpc_point(cap["c_rpc"], load)  # type: ignore[arg-type]
            conns, depth = load.split("x")
            out.append({
                "name": f"server capacity namewire PlusServer / C RPC server, {depth} in flight "
                f"on each of {conns} connection(s)",
                "best_peer": "C load generator",
                "value": round(a["calls_per_s"] / b["calls_per_s"], 3) if a and b else None,
            })
    rpc = results.get("rpc")
    if rpc and 100 in rpc.get("callers", []) and max(rpc["callers"]) != 100:
        out.append(_rpc_ratio(rpc, 100))
    echo = {row["key"]: row for row in results.get("echo", {}).get("rows", [])}
    rows = {row["key"]: row for row in (rpc or {}).get("rows", [])}
    c_echo = (echo["c_epoll"].get("points", {}).get("1") or {}) if "c_epoll" in echo else {}
    one = _rpc_point(rows["namewire"], 1) if "namewire" in rows else None
    if c_echo.get("p50_us") and one:
        out.append({
            "name": "one caller: namewire p50 / the C echo's p50 round trip at 1 connection "
            f"({c_echo['p50_us']:.0f} µs; the target is at most 1.3)",
            "best_peer": "lower is better",
            "value": round(one["p50_us"] / c_echo["p50_us"], 3),
        })
    c_one = _rpc_point(cap["c_rpc"], "1x1") if "c_rpc" in cap else None  # type: ignore[arg-type]
    if c_one and one:
        out.append({
            "name": "one caller: namewire p50 / the C RPC server's p50 under the C load generator "
            f"at 1 connection, 1 call in flight ({c_one['p50_us']:.0f} µs)",
            "best_peer": "lower is better",
            "value": round(one["p50_us"] / c_one["p50_us"], 3),
        })
    return out


def _probe_ratios(rpc: dict[str, Any]) -> list[dict[str, Any]]:
    """namewire's calls/s against the bare msgpack-RPC probe's, at each caller count above 1."""
    rows = {row["key"]: row for row in rpc.get("rows", [])}
    if "namewire" not in rows or "probe" not in rows:
        return []
    out = []
    for callers in rpc.get("callers", []):
        if callers == 1:
            continue
        a, b = _rpc_point(rows["namewire"], callers), _rpc_point(rows["probe"], callers)
        out.append({
            "name": f"RPC calls/s namewire / bare msgpack-RPC probe at {callers} callers",
            "best_peer": "reference",
            "value": round(a["calls_per_s"] / b["calls_per_s"], 3) if a and b else None,
        })
    return out


def _cpu_per_call(point: dict[str, Any] | None) -> str:
    if not point or "server_us_per_call" not in point:
        return "—"
    return f"{point['server_us_per_call']:.1f} / {point['client_us_per_call']:.1f} µs"


def to_markdown(results: dict[str, Any]) -> str:
    """The whole report as Markdown: echo, RPC, memory, ratios, logging, versions, notes."""
    meta = results["meta"]
    out: list[str] = []
    out.append(
        f"Run {meta['date']} on {meta['machine']} ({meta['mode']} run, "
        f"{meta['seconds_per_point']} s per point, {meta['pinning']}), "
        f"namewire {meta['namewire_commit']}, "
        f"{meta.get('elapsed_seconds', 0):.0f} s in all."
    )
    out.append("")

    echo = results.get("echo")
    if echo:
        conns = echo["connections"]
        out.append("### Echo: round trips/s (one 12-byte frame in flight per connection)")
        out.append("")
        top = str(max(conns))
        out.append(
            "| server | "
            + " | ".join(f"{c} conn" for c in conns)
            + f" | CPU server / client @{top} |"
        )
        out.append("|---|" + "---:|" * (len(conns) + 1))
        for row in echo["rows"]:
            cells = [
                _cell_or_failed(row, str(c), _num(_echo_value(row, c)) + _noisy(row, c))
                for c in conns
            ]
            point = row.get("points", {}).get(top) or {}
            if "server_cpu" in point:
                cells.append(f"{point['server_cpu']:.0%} / {point.get('client_cpu') or 0:.0%}")
            else:
                cells.append("—")
            label = row["label"] + (f" (skipped: {row['skipped']})" if "skipped" in row else "")
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        out.extend(_noise_footnote(echo["rows"], conns))
        out.append("")

    rpc = results.get("rpc")
    if rpc:
        callers = rpc["callers"]
        lo, hi = min(callers), max(callers)
        out.append("### RPC: `plus(1, 2)` in a loop, calls/s and latency")
        out.append("")
        head = [f"{c} caller{'s' if c > 1 else ''}" for c in callers]
        out.append(
            f"| system | {' | '.join(head)} | p50 / p99 @{lo} | p50 / p99 @{hi} "
            f"| CPU server / client per call @{hi} |"
        )
        out.append("|---|" + "---:|" * (len(callers) + 3))
        for row in rpc["rows"]:
            cells = []
            for c in callers:
                p = _rpc_point(row, c)
                cells.append(
                    _cell_or_failed(
                        row, str(c), _num(p["calls_per_s"]) + _noisy(row, c) if p else "—"
                    )
                )
            for c in (lo, hi):
                p = _rpc_point(row, c)
                cells.append(_latency(p) if p else _cell_or_failed(row, str(c), "—"))
            cells.append(_cpu_per_call(_rpc_point(row, hi)))
            label = row["label"] + (f" (skipped: {row['skipped']})" if "skipped" in row else "")
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        out.extend(_noise_footnote(rpc["rows"], callers))
        out.append("")

    capacity = results.get("capacity")
    if capacity:
        loads = capacity["loads"]
        out.append("### Server capacity: the C RPC load generator (namewire frames), calls/s")
        out.append("")
        out.append("connections × calls in flight on each; CPU per call of server / load generator.")
        out.append("")
        out.append("| server | " + " | ".join(loads) + " | p50 / p99 @" + loads[0]
                   + " | CPU per call @" + loads[-1] + " |")
        out.append("|---|" + "---:|" * (len(loads) + 2))
        for row in capacity["rows"]:
            cells = []
            for load in loads:
                p = _rpc_point(row, load)  # type: ignore[arg-type]
                cells.append(_cell_or_failed(
                    row, load, _num(p["calls_per_s"]) + _noisy(row, load) if p else "—"))  # type: ignore[arg-type]
            p = _rpc_point(row, loads[0])  # type: ignore[arg-type]
            cells.append(_latency(p) if p else "—")
            cells.append(_cpu_per_call(_rpc_point(row, loads[-1])))  # type: ignore[arg-type]
            label = row["label"] + (f" (skipped: {row['skipped']})" if "skipped" in row else "")
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        out.append("")

    memory = results.get("memory")
    if memory:
        out.append(f"### Memory: RSS per idle connection ({memory['conns']:,} idle connections)")
        out.append("")
        out.append("| server | RSS before | RSS after | per connection | held / answered hello |")
        out.append("|---|---:|---:|---:|---:|")
        for row in memory["rows"]:
            if row.get("error") or "skipped" in row:
                why = row.get("error") or f"skipped: {row['skipped']}"
                out.append(f"| {row['label']} | failed: {why} | | | |")
                continue
            out.append(
                f"| {row['label']} | {row['rss_before_kb'] / 1024:,.1f} MiB | "
                f"{row['rss_after_kb'] / 1024:,.1f} MiB | {row['per_conn_bytes']:,.0f} B | "
                f"{row['open']:,} / {row.get('answered', 0):,} |"
            )
        out.append("")

    ratios = results.get("ratios") or []
    if ratios:
        out.append("### Targets: ratios")
        out.append("")
    if ratios and results.get("echo"):
        out.append("| ratio | 10 conn | 100 conn | 1000 conn |")
        out.append("|---|---:|---:|---:|")
        for r in ratios:
            if "values" in r:
                cells = [f"{v:.2f}×" if v else "—" for v in r["values"].values()]
                out.append(f"| {r['name']} | " + " | ".join(cells) + " |")
        seed = " | ".join(
            _ratio(SEED_ECHO["luanet"][c], SEED_ECHO["node.js"][c]) for c in (10, 100, 1000)
        )
        out.append(f"| *luanet in 2014 (its published table): luanet / node.js* | {seed} |")
        seed = " | ".join(
            _ratio(SEED_ECHO["luanet"][c], SEED_ECHO["luvit"][c]) for c in (10, 100, 1000)
        )
        out.append(f"| *luanet in 2014 (its published table): luanet / luvit* | {seed} |")
        out.append("")
    if ratios:
        for r in ratios:
            if "value" in r:
                value = f"{r['value']:.2f}×" if r["value"] else "—"
                out.append(f"- {r['name']} ({r.get('best_peer') or 'no peer'}): **{value}**")
            elif "bytes" in r:
                out.append(f"- {r['name']}: **{r['bytes']:,.0f} bytes**")
        out.append("")

    logging = results.get("logging")
    if logging:
        out.append("### Logging (bench/logging_bench.py)")
        out.append("")
        out.extend(_generic_table(logging))
        out.append("")
    # Sections hooked in as scripts (run.py's `script_section`) have no layout of their own: a
    # title, then their rows or fields as they gave them.
    for name in results.get("meta", {}).get("sections", []):
        if name not in KNOWN_SECTIONS and isinstance(results.get(name), dict):
            out.append(f"### {SCRIPT_TITLES.get(name, name)}")
            out.append("")
            out.extend(_generic_table(results[name]))
            out.append("")

    versions = results.get("versions", {})
    if versions:
        out.append("### Versions")
        out.append("")
        out.append(", ".join(f"{k} {v}" for k, v in versions.items()) + ".")
        out.append("")

    notes = results.get("notes") or []
    if notes:
        out.append("### Skipped and failed")
        out.append("")
        out.extend(f"- {n}" for n in notes)
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _latency(point: dict[str, Any]) -> str:
    def fmt(us: float | None) -> str:
        if us is None:
            return "—"
        return f"{us / 1000:.1f} ms" if us >= 10_000 else f"{us:,.0f} µs"

    return f"{fmt(point.get('p50_us'))} / {fmt(point.get('p99_us'))}"


def _generic_table(data: Any) -> list[str]:
    """Renders the logging bench's JSON without knowing its exact shape.

    A list of flat dicts (or a dict holding one under ``rows``/``results``) becomes a table;
    anything else is shown as key: value lines.
    """
    if "error" in data and len(data) == 1:
        return [f"failed: {data['error']}"]
    if "skipped" in data and len(data) == 1:
        return [f"skipped: {data['skipped']}"]
    rows: Any = data
    if isinstance(data, dict):
        for key in ("rows", "results", "table"):
            if isinstance(data.get(key), list):
                rows = data[key]
                break
    if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
        cols: list[str] = []
        for r in rows:
            cols.extend(k for k in r if k not in cols)
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for r in rows:
            lines.append("| " + " | ".join(_fmt_cell(r.get(c)) for c in cols) + " |")
        return lines
    if isinstance(data, dict):
        # Nested values (every round's points, say) stay in latest.json: a table cannot show them.
        return [f"- {k}: {_fmt_cell(v)}" for k, v in data.items() if not isinstance(v, dict)]
    return [f"`{data!r}`"[:2000]]


def _fmt_cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if value >= 100 else f"{value:.3g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def write_chart(results: dict[str, Any], path: Path) -> str | None:
    """Draws the echo and RPC tables as grouped bars into a PNG; returns an error text or None."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        return f"no chart: matplotlib missing ({exc})"

    panels = [p for p in ("echo", "rpc") if results.get(p)]
    if not panels:
        return "no chart: no echo or RPC results"
    fig, axes = plt.subplots(1, len(panels), figsize=(7.5 * len(panels), 6.2), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        section = results[panel]
        xs = section["connections"] if panel == "echo" else section["callers"]
        rows = [r for r in section["rows"] if "skipped" not in r]
        width = 0.8 / max(1, len(rows))
        for i, row in enumerate(rows):
            ys = []
            for x in xs:
                if panel == "echo":
                    ys.append(_echo_value(row, x) or 0.0)
                else:
                    p = _rpc_point(row, x)
                    ys.append(p["calls_per_s"] if p else 0.0)
            positions = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(xs))]
            bars = ax.bar(positions, ys, width, label=row["label"])
            if row["key"] == "namewire":
                for bar in bars:
                    bar.set_edgecolor("black")
                    bar.set_linewidth(1.5)
        ax.set_xticks(range(len(xs)))
        ax.set_xticklabels([str(x) for x in xs])
        if panel == "echo":
            ax.set_title("Echo: round trips/s (one frame in flight per connection)")
            ax.set_xlabel("connections")
            ax.set_ylabel("round trips / s")
        else:
            ax.set_title("RPC plus(1, 2): calls/s")
            ax.set_xlabel("concurrent callers")
            ax.set_ylabel("calls / s")
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.grid(axis="y", alpha=0.3)
        # Below the bars: inside, a legend of seven rows hides the tallest groups.
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)
    meta = results["meta"]
    fig.suptitle(
        f"namewire bench, {meta['mode']} run, {meta['date']}\n{meta['machine']}", fontsize=9
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def update_readme(readme: Path, markdown: str) -> bool:
    """Replaces the text between the README's result markers; False if the markers are missing."""
    try:
        text = readme.read_text()
    except OSError:
        return False
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        return False
    new = text[: start + len(README_START)] + "\n" + markdown + text[end:]
    readme.write_text(new)
    return True

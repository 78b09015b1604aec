"""The Prometheus endpoint (``namewire run --metrics URL``): parsed, and scraped by a real Prometheus."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import namewire
from namewire.runtime._metrics import SAMPLE_EVERY
from tests.conftest import Processes, free_port, wait_port
from tests.observe.conftest import wait_for

pytestmark = pytest.mark.timeout(60)


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return bytes(answer.read())


async def make_calls(ns: str, target: str, n: int) -> None:
    me = namewire.Node("prom-tester")
    async with me.serve(nameservice=ns, listen=None):
        await wait_for(me, target)
        for i in range(n):
            await me.rpc_call(target, "plus", i, i)
        with pytest.raises(namewire.RemoteError):
            await me.rpc_call(target, "fail", "on purpose")


async def test_the_endpoint_speaks_the_prometheus_text_format(procs: Processes) -> None:
    ns, _ = procs.nameservice()
    port = free_port()
    service = procs.service("observed.py", "Scraped", ns, "--metrics", f"tcp://127.0.0.1:{port}")
    await asyncio.to_thread(wait_port, port, service)
    await make_calls(ns, "Scraped", 50)
    text = (await asyncio.to_thread(get, f"http://127.0.0.1:{port}/metrics")).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    calls = {
        (s.labels["function"], s.labels["outcome"]): s.value
        for s in families["namewire_rpc_server_calls"].samples
        if s.labels["caller"] == "prom-tester"
    }
    assert calls == {("plus", "ok"): 50, ("fail", "ok"): 0, ("fail", "error"): 1}
    duration = families["namewire_rpc_server_duration_seconds"]
    assert duration.type == "histogram"
    count = [s for s in duration.samples if s.name.endswith("_count")
             and s.labels["function"] == "plus"]
    # The histogram holds the timed calls, one in SAMPLE_EVERY (the counter above has all 50).
    assert count[0].value == -(-50 // SAMPLE_EVERY) and count[0].labels["service"] == "Scraped"
    assert families["namewire_connections"].type == "gauge"
    assert families["namewire_bytes_received"].samples[0].value > 0
    with pytest.raises(urllib.error.HTTPError, match="404"):
        await asyncio.to_thread(get, f"http://127.0.0.1:{port}/nothing")


def query(prom: str, expr: str) -> list[dict[str, Any]]:
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    answer = json.loads(get(url))
    assert answer["status"] == "success", answer
    return list(answer["data"]["result"])


@pytest.mark.skipif(shutil.which("prometheus") is None,
                    reason="Debian's prometheus is not installed (.ci/apt-packages lists it)")
async def test_a_real_prometheus_scrapes_a_running_service(procs: Processes, tmp_path: Path) -> None:
    ns, _ = procs.nameservice()
    port, prom_port = free_port(), free_port()
    service = procs.service("observed.py", "Scraped", ns, "--metrics", f"tcp://127.0.0.1:{port}")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: namewire\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
    )
    prometheus = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("w"),
    )
    try:
        await asyncio.to_thread(wait_port, port, service)
        await make_calls(ns, "Scraped", 30)
        await asyncio.to_thread(wait_port, prom_port, None, 30)
        prom = f"http://127.0.0.1:{prom_port}"
        expr = 'namewire_rpc_server_calls_total{service="Scraped",function="plus",outcome="ok"}'
        deadline = time.monotonic() + 30
        while True:
            rows = await asyncio.to_thread(query, prom, expr)
            if rows and rows[0]["value"][1] == "30":
                break
            assert time.monotonic() < deadline, (rows, (tmp_path / "prometheus.log").read_text())
            await asyncio.sleep(0.3)
        assert rows[0]["metric"]["caller"] == "prom-tester"
        assert rows[0]["metric"]["job"] == "namewire"
        # What Prometheus stored is usable as a histogram: p99 of the served calls is below 1 s.
        p99 = await asyncio.to_thread(
            query, prom,
            'histogram_quantile(0.99, namewire_rpc_server_duration_seconds_bucket{function="plus"})',
        )
        assert 0 < float(p99[0]["value"][1]) < 1
    finally:
        prometheus.terminate()
        try:
            prometheus.wait(10)
        except subprocess.TimeoutExpired:
            prometheus.kill()
            prometheus.wait()

"""The JS client (namewire.js as the gateway serves it) driven from node against a real gateway
process, including kill -9 of the gateway mid-call and the client's reconnect."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from namewire.gateway import client_source
from tests.conftest import APPS, Processes, free_port, wait_port

pytestmark = pytest.mark.timeout(60)

HERE = Path(__file__).resolve().parent


def node_with_websocket() -> list[str]:
    """The node command line that has a global WebSocket (node 22+, or 20/21 with a flag)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node.js is not installed (Debian package nodejs)")
    for argv in ([node], [node, "--experimental-websocket"]):
        probe = subprocess.run([*argv, "-e", "process.exit(typeof WebSocket === 'function' ? 0 : 1)"],
                               capture_output=True, timeout=20)
        if probe.returncode == 0:
            return argv
    pytest.skip("this node.js has no WebSocket (needs node 20.10+ with --experimental-websocket)")


def start_gateway(procs: Processes, port: int, ns: str, *extra: str) -> subprocess.Popen[str]:
    proc = procs.start(
        "-m", "namewire", "gateway", "--listen", f"ws://127.0.0.1:{port}/", "--nameservice", ns,
        "--expose", "PlusServer:plus,notify,tell,slow", "--auth", f"{APPS / 'web_auth.py'}:check",
        "--log-level", "WARNING", *extra,
    )
    wait_port(port, proc)
    return proc


def wait_registered(ns: str, name: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run([sys.executable, "-m", "namewire", "ls", "--nameservice", ns, "--json"],
                             capture_output=True, text=True, timeout=20, env=os.environ)
        if name in out.stdout:
            return
        time.sleep(0.1)
    raise TimeoutError(f"{name} did not register")


def test_node_drives_the_js_client(procs: Processes, tmp_path: Path) -> None:
    node = node_with_websocket()
    ns, _ = procs.nameservice()
    procs.service("web_service.py", "PlusServer", ns)
    port = free_port()
    gateway = start_gateway(procs, port, ns)
    wait_registered(ns, "PlusServer")
    # The module under test is the one the gateway serves (.mjs: node treats it as ES module).
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/namewire.js", timeout=5) as response:
        served = response.read()
    module = tmp_path / "namewire.mjs"
    module.write_bytes(served)
    client = subprocess.Popen([*node, str(HERE / "node_client.mjs"), str(module),
                               f"ws://127.0.0.1:{port}/"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    steps: dict[str, Any] = {}
    try:
        assert client.stdout is not None
        for line in client.stdout:
            step = json.loads(line)
            steps[step["step"]] = step
            if step["step"] == "kill":
                os.kill(gateway.pid, signal.SIGKILL)
                gateway.wait(5)
                gateway = start_gateway(procs, port, ns)
        client.wait(20)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    if client.returncode != 0:
        pytest.fail(f"node client failed after steps {list(steps)}: {steps.get('error')}; "
                    f"stderr: {client.stderr.read()[:2000] if client.stderr else ''}")
    assert steps["bad-token"] == {"step": "bad-token", "code": "unauthorized",
                                  "isNamewireError": True}
    assert steps["connected"]["name"] == "gateway/1"
    assert steps["call"]["value"] == 3
    assert steps["providers"]["value"] == ["PlusServer"]
    assert steps["not-exposed"]["code"] == "not_exposed"
    assert steps["pushed"] == {"step": "pushed", "msg": {"hi": "node"}, "from": "PlusServer"}
    # web_service.py answers with a plain send_msg to the browser's name
    assert steps["echo"] == {"step": "echo", "msg": {"echo": "ping"}, "from": "PlusServer"}
    assert steps["pending-rejected"]["code"] == "disconnected"
    assert steps["reconnected"]["name"] == "gateway/1"  # a new gateway process counts from 1
    assert steps["reconnected"]["value"] == 5
    assert "done" in steps


def test_the_js_client_reconnects_with_jittered_exponential_backoff(tmp_path: Path) -> None:
    """The waits before each reconnect double from minDelay up to maxDelay, each times a random
    0.5-1.5; close() stops the retries. Timers are run at once (backoff_client.mjs)."""
    node = node_with_websocket()
    module = tmp_path / "namewire.mjs"
    module.write_bytes(client_source())
    out = subprocess.run([*node, str(HERE / "backoff_client.mjs"), str(module),
                          "ws://127.0.0.1:9/"],
                         capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 0, out.stderr[:2000]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    delays = result["delays"]
    bases = [min(800, 100 * 2**k) for k in range(len(delays))]
    assert len(delays) == 10
    for delay, base in zip(delays, bases, strict=True):
        assert 0.5 * base <= delay <= 1.5 * base, (delays, bases)
    ratios = {round(d / b, 6) for d, b in zip(delays, bases, strict=True)}
    assert len(ratios) > 5, f"no jitter: {delays}"
    # at most the attempt already scheduled when close() came runs; no new ones
    assert result["after_close"] <= 1, result

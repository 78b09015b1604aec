"""Three hosts from network namespaces, and the registries the multi-host tests run on."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.etcd_cluster import EtcdCluster, etcd_cluster, require_etcd
from tests.multihost.hosts import Host, Hosts, make_hosts

DRIVER = "tests/multihost/driver.py"


@pytest.fixture
def hosts() -> Iterator[list[Host]]:
    made: Hosts = make_hosts(3)
    try:
        yield made.hosts
    finally:
        made.remove()


@dataclass
class Cluster:
    kind: str
    url: str
    etcd: EtcdCluster | None = None


@pytest.fixture(params=["nameservice", "etcd"])
def registry(request: pytest.FixtureRequest, hosts: list[Host]) -> Iterator[Cluster]:
    """The built-in name service on h1, or a three-member etcd cluster with one member per host."""
    if request.param == "nameservice":
        url = hosts[0].nameservice()
        yield Cluster("nameservice", url)
        return
    require_etcd()
    cluster = etcd_cluster(3, hosts=[h.address for h in hosts], wraps=[h.wrap() for h in hosts])
    try:
        yield Cluster("etcd", cluster.url, cluster)
    finally:
        cluster.stop()


def driver(host: Host, cluster: Cluster, *argv: str) -> subprocess.Popen[str]:
    return host.python(DRIVER, "--nameservice", cluster.url, "--listen",
                       f"tcp://{host.address}:0", *argv)


def lines(proc: subprocess.Popen[str], timeout: float) -> list[dict[str, Any]]:
    """The JSON lines a driver printed, once it has exited; fails with its output otherwise."""
    out, _ = proc.communicate(timeout=timeout)
    rows = []
    for line in out.splitlines():
        if line.startswith("{"):
            rows.append(json.loads(line))
    assert proc.returncode == 0, out[-3000:]
    return rows


class Output:
    """Collects a process's JSON lines in a thread while it runs (and its other lines for errors)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.rows: list[dict[str, Any]] = []
        self.text: list[str] = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.text.append(line)
            if line.startswith("{"):
                self.rows.append(json.loads(line))

    def wait_for(self, key: str, timeout: float) -> dict[str, Any]:
        """The first row with ``key``; fails with the process's output after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for row in self.rows:
                if key in row:
                    return row
            if self.proc.poll() is not None and not self._thread.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"no {key!r} line; output: {''.join(self.text)[-3000:]}")

    def finish(self, timeout: float) -> list[dict[str, Any]]:
        self.proc.wait(timeout)
        self._thread.join(5)
        assert self.proc.returncode == 0, "".join(self.text)[-3000:]
        return self.rows


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "faults: multi-host fault tests (10-25 s each; CI runs them, "
        "`-m 'not faults'` leaves them out locally)")

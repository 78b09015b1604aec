"""Three hosts from network namespaces, and the registries the multi-host tests run on."""

from __future__ import annotations

import json
import subprocess
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
        _wait_listening(hosts[1], hosts[0].address, 8010)
        yield Cluster("nameservice", url)
        return
    require_etcd()
    cluster = etcd_cluster(3, hosts=[h.address for h in hosts], wraps=[h.wrap() for h in hosts])
    try:
        yield Cluster("etcd", cluster.url, cluster)
    finally:
        cluster.stop()


def _wait_listening(host: Host, address: str, port: int, timeout: float = 10.0) -> None:
    code = (f"import socket,time\nend=time.time()+{timeout}\n"
            f"while True:\n try:\n  socket.create_connection(('{address}',{port}),0.2).close();break\n"
            " except OSError:\n  assert time.time()<end;time.sleep(0.05)\n")
    host.sh("python3", "-c", code)


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

"""Services on three hosts (network namespaces) reach each other by name over TCP, with the
built-in name service on one host or a three-member etcd cluster spread over the three."""

from __future__ import annotations

import pytest

from tests.multihost.conftest import Cluster, driver, lines
from tests.multihost.hosts import Host

pytestmark = pytest.mark.timeout(60)


def test_calls_messages_and_providers_across_hosts(hosts: list[Host], registry: Cluster) -> None:
    hosts[1].service("worker.py", "Worker", registry.url, "--lease-ttl", "3")
    [ready, seen] = lines(driver(hosts[2], registry, "basic", "Worker"), timeout=40)
    assert "ready" in ready
    assert seen["plus"] == 5
    assert seen["echo"] == ["Worker", {"from": "Worker", "echo": "hello"}]
    assert seen["providers"] == ["Worker"]
    assert seen["host"].startswith("h3/")
    # The only route is TCP to the worker's host address: another host, so no unix socket.
    assert [peer for peer in seen["peers"] if peer[0] == "Worker"] == [
        ["Worker", seen_address(seen, "Worker")]
    ]
    assert seen_address(seen, "Worker").startswith(f"tcp://{hosts[1].address}:")


def seen_address(seen: dict[str, object], name: str) -> str:
    peers = seen["peers"]
    assert isinstance(peers, list)
    return str(next(address for peer, address in peers if peer == name))

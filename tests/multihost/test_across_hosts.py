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
    # Every connection with Worker is TCP from or to its host's address: another host, so no
    # unix socket. (Two of them: without certificates, Worker does not take our connection to it
    # as its route back to us on the word of our hello; it connects to our address instead.)
    workers = [address for peer, address in seen["peers"] if peer == "Worker"]
    assert 1 <= len(workers) <= 2
    assert all(address.startswith(f"tcp://{hosts[1].address}:") for address in workers)


"""The backends the registry contract runs against: the built-in name service and a real etcd.

A `Backend` says where the registry is and the few ways the backends differ on purpose, so that a
test states the contract once and each difference in one place. A new backend (or a variant such
as groups of workers) is one more `Backend` in `BACKENDS` and its branch in `backend`.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest

from namewire.registry import Registry, open_registry
from tests.conftest import Processes
from tests.etcd_cluster import EtcdCluster, etcd_cluster

BACKENDS = ["nameservice", "etcd"]
_prefixes = itertools.count()


@dataclass
class Backend:
    kind: str
    url: str
    releases_on_close: bool
    """True (built-in): a name is free the moment its holder's registry session closes (kill -9).
    False (etcd): it stays held until its lease is revoked (clean stop) or runs out (TTL)."""
    answers_from_view: bool
    """True (etcd): while the registry is down, look-ups answer from the local view of every
    name. False (built-in): only names already looked up (the cache) are answered."""

    async def client(self, node_name: str, ttl: float = 5.0) -> Registry:
        registry = open_registry(self.url, node_name=node_name, ttl=ttl)
        await registry.start()
        return registry


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[EtcdCluster]:
    """One etcd member for the whole run; each test gets a key prefix of its own."""
    cluster = etcd_cluster(1)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, procs: Processes) -> Backend:
    if request.param == "nameservice":
        url, _ = procs.nameservice()
        return Backend("nameservice", url, releases_on_close=True, answers_from_view=False)
    cluster: EtcdCluster = request.getfixturevalue("etcd_server")
    return Backend("etcd", f"{cluster.url}/contract{next(_prefixes)}",
                   releases_on_close=False, answers_from_view=True)


async def eventually(check: Callable[[], Awaitable[bool]], within: float, what: str) -> float:
    """Poll ``check`` until true; the seconds it took. Fails naming ``what`` after ``within`` s."""
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > within:
            pytest.fail(f"{what}: not within {within}s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start

"""The backends the registry contract runs against: the built-in name service and a real etcd.

A `Backend` says where the registry is and the few ways the backends differ on purpose, so that a
test states the contract once and each difference in one place. A new backend (or a variant such
as groups of workers) is one more `Backend` in `BACKENDS` and its branch in `backend`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import ContextManager

import pytest

from namewire.registry import Registry, open_registry
from tests.conftest import Processes
from tests.etcd_cluster import EtcdCluster

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
    down: Callable[[], ContextManager[None]]
    """The registry is unreachable inside the block and back after it (built-in: killed and
    started again on the same address; etcd: its server frozen with SIGSTOP, then resumed)."""

    async def client(self, node_name: str, ttl: float = 5.0) -> Registry:
        registry = open_registry(self.url, node_name=node_name, ttl=ttl)
        await registry.start()
        return registry


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, procs: Processes) -> Backend:
    if request.param == "nameservice":
        url, proc = procs.nameservice()
        running = [proc]

        @contextlib.contextmanager
        def restarted() -> Iterator[None]:
            running[0].kill()
            running[0].wait(5)
            try:
                yield
            finally:
                running[0] = procs.nameservice(int(url.rsplit(":", 1)[1]))[1]

        return Backend("nameservice", url, releases_on_close=True, answers_from_view=False,
                       down=restarted)
    cluster: EtcdCluster = request.getfixturevalue("etcd_server")

    @contextlib.contextmanager
    def frozen() -> Iterator[None]:
        member = cluster.members[0]
        assert member.proc is not None
        os.kill(member.proc.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(member.proc.pid, signal.SIGCONT)

    return Backend("etcd", f"{cluster.url}/contract{next(_prefixes)}",
                   releases_on_close=False, answers_from_view=True, down=frozen)


async def eventually(check: Callable[[], Awaitable[bool]], within: float, what: str) -> float:
    """Poll ``check`` until true; the seconds it took. Fails naming ``what`` after ``within`` s."""
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > within:
            pytest.fail(f"{what}: not within {within}s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start

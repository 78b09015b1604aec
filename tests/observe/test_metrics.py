"""What a node counts, read by name through ``namewire.stats``, across real processes."""

from __future__ import annotations

import asyncio

import pytest

import namewire
from namewire.runtime._metrics import (
    BUCKETS,
    SAMPLE_EVERY,
    CallStats,
    Metrics,
    outcome_of,
    quantile,
)
from tests.conftest import Processes
from tests.observe.conftest import served, wait_for

pytestmark = pytest.mark.timeout(60)


async def test_calls_made_and_served_are_counted_per_peer_function_and_outcome(
    procs: Processes,
) -> None:
    ns, _ = procs.nameservice()
    adder = procs.service("observed.py", "Adder", ns, "--lease-ttl", "0.3")
    me = namewire.Node("metrics-tester")
    async with me.serve(nameservice=ns, listen=None):
        await wait_for(me, "Adder")
        for i in range(200):
            assert await me.rpc_call("Adder", "plus", i, 1) == i + 1
        for _ in range(3):
            with pytest.raises(namewire.RemoteError):
                await me.rpc_call("Adder", "fail", "no good")
        with pytest.raises(namewire.NoSuchFunction):
            await me.rpc_call("Adder", "nothing")
        # Its lease is renewed every 0.1 s: wait for the first renewal, which the calls can outrun.
        for _ in range(100):
            stats = await me.rpc_call("Adder", "namewire.stats")
            if stats["counters"]["lease_renewals"] >= 1:
                break
            await asyncio.sleep(0.05)

        assert stats["service"] == "Adder"
        assert stats["functions"] == ["fail", "plus", "relay", "traceparent"]
        plus = served(stats, "metrics-tester", "plus")
        assert plus["count"] == 200 and plus["failed"] == {}
        # Every call counted, one in SAMPLE_EVERY timed (the 1st, 9th, ...): 25 of the 200.
        assert len(plus["buckets"]) == len(BUCKETS) + 1
        assert sum(plus["buckets"]) == plus["timed"] == -(-200 // SAMPLE_EVERY) == 25
        assert 0 < plus["seconds"] < 1
        assert served(stats, "metrics-tester", "fail")["failed"] == {"error": 3}
        assert served(stats, "metrics-tester", "nothing")["failed"] == {"no_such_function": 1}
        errors = [e for e in stats["errors"] if e["function"] == "fail"]
        assert len(errors) == 3 and errors[0]["message"] == "ValueError: no good"
        counters = stats["counters"]
        assert counters["connections"] == 1  # ours (its session to the name service is apart)
        assert counters["bytes_received"] > 200 * 10 and counters["bytes_sent"] > 200 * 3
        assert counters["lease_renewals"] >= 1  # every 0.1 s
        assert counters["lease_losses"] == 0 and counters["pending_calls"] == 0

        mine = me.stats()
        made = {(r["peer"], r["function"]): r for r in mine["made"]}
        assert made["Adder", "plus"]["count"] == 200 and made["Adder", "plus"]["timed"] == 25
        assert made["Adder", "fail"]["failed"] == {"error": 3}
        assert made["Adder", "nothing"]["failed"] == {"no_such_function": 1}
        # The caller's histogram covers the round trip (the same 25 calls are timed on both
        # sides, one connection keeps their order): never faster than the server's.
        assert made["Adder", "plus"]["seconds"] > plus["seconds"]
        assert mine["counters"]["registry_lookups"] >= 1
        assert mine["counters"]["connections_opened"] == 1
        assert me.registry is not None
        hits = mine["counters"]["registry_cache_hits"]
        await me.registry.lookup("Adder")
        assert me.stats()["counters"]["registry_cache_hits"] == hits + 1

        # The service restarts under its name: our next calls connect again (a reconnect).
        adder.terminate()
        adder.wait(10)
        procs.service("observed.py", "Adder", ns)
        await wait_for(me, "Adder")
        counters = me.stats()["counters"]
        assert counters["peer_reconnects"] == 1
        assert counters["connections_closed"] == 1 and counters["connections"] == 1
        lost = [e for e in me.stats()["errors"] if e["outcome"] == "lost"]
        assert all(e["peer"] == "Adder" for e in lost)


async def test_a_node_made_with_metrics_off_counts_nothing_but_still_answers_stats() -> None:
    node = namewire.Node("quiet", metrics=False)

    @node.function
    def plus(a: int, b: int) -> int:
        return a + b

    async with node.serve(standalone=True, listen=None):
        assert await node.rpc_call("quiet", "plus", 1, 2) == 3
        stats = await node.rpc_call("quiet", "namewire.stats")
    assert stats["counting"] is False and stats["made"] == [] and stats["served"] == []


def test_histogram_buckets_and_quantiles() -> None:
    m = Metrics("x")
    for seconds in (0.00001, 0.00006, 0.00006, 0.0003, 20.0):
        m.call_made("p", "f", seconds)
    buckets = m.made["p", "f"].buckets
    assert buckets[0] == 1 and buckets[1] == 2 and buckets[3] == 1 and buckets[-1] == 1
    assert quantile(buckets, 0.5) == pytest.approx(0.00005 + 0.00005 * (1.5 / 2))
    assert quantile([0] * len(buckets), 0.5) is None
    assert outcome_of(namewire.CallTimeout("p", "f", 1.0)) == "timeout"
    assert outcome_of(namewire.PeerLost("p", "reset")) == "lost"
    assert outcome_of(ValueError()) == "error"


def test_every_call_is_counted_and_one_in_sample_every_is_timed() -> None:
    stats = CallStats()
    chosen = [stats.start() for _ in range(3 * SAMPLE_EVERY + 1)]
    assert [i for i, timed in enumerate(chosen) if timed] == [0, 8, 16, 24]
    assert stats.count == 3 * SAMPLE_EVERY + 1 and stats.timed == 0
    stats.observe(0.00006)
    stats.observe(100.0)
    assert stats.timed == 2 and stats.buckets[1] == 1 and stats.buckets[-1] == 1
    # Failures are counted whether or not they were timed; only timed ones enter the histogram.
    m = Metrics("x")
    s = m.made_stats("p", "f")
    assert s.start()
    m.call_failed(True, "p", "f", 0.5, "timeout", "too slow", stats=s)
    assert not s.start()
    m.call_failed(True, "p", "f", None, "lost", "gone", stats=s)
    m.call_failed(True, "p", "f", None, "lost", "gone")  # counted here
    assert s.as_dict()["count"] == 3 and s.timed == 1
    assert s.failed == {"timeout": 1, "lost": 2} and len(m.errors) == 3

"""W3C traceparent in call metadata, through nested calls; OpenTelemetry spans when set up."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import namewire
from namewire.node._tracing import new_traceparent, trace_id_of
from tests.conftest import ROOT, Processes
from tests.observe.conftest import wait_for

pytestmark = pytest.mark.timeout(60)


async def test_the_traceparent_travels_through_nested_calls_unchanged(procs: Processes) -> None:
    ns, _ = procs.nameservice()
    procs.service("observed.py", "First", ns)
    procs.service("observed.py", "Second", ns)
    me = namewire.Node("trace-tester")
    async with me.serve(nameservice=ns, listen=None):
        await wait_for(me, "First")
        await wait_for(me, "Second")
        assert await me.rpc_call("First", "traceparent") is None  # nobody started a trace
        given = new_traceparent()
        with namewire.trace_context(given) as trace:
            assert trace == given == namewire.current_traceparent()
            answer = await me.rpc_call("First", "relay", "Second", "traceparent")
        assert answer == {"here": given, "there": given}
        assert namewire.current_traceparent() is None
        # A failure served inside a trace is listed with its trace id.
        with namewire.trace_context() as other:
            with pytest.raises(namewire.RemoteError):
                await me.rpc_call("First", "fail", "traced")
        errors = (await me.rpc_call("First", "namewire.stats"))["errors"]
        assert errors[-1]["trace"] == other and trace_id_of(other) == other[3:35]


def test_spans_of_a_nested_chain_form_one_tree(procs: Processes) -> None:
    pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk is in the dev extra")
    ns, _ = procs.nameservice()
    done = subprocess.run([sys.executable, str(ROOT / "tests/observe/otel_chain.py"), ns],
                          capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    spans = json.loads(done.stdout.splitlines()[-1])
    by_name = {(s["name"], s["kind"]): s for s in spans}
    request = by_name["request", "INTERNAL"]
    a_to_b = by_name["B/relay", "CLIENT"]
    b_serves = by_name["B/relay", "SERVER"]
    b_to_c = by_name["C/leaf", "CLIENT"]
    c_serves = by_name["C/leaf", "SERVER"]
    chain = [request, a_to_b, b_serves, b_to_c, c_serves]
    assert len({s["trace"] for s in chain}) == 1
    for parent, child in zip(chain, chain[1:], strict=False):
        assert child["parent"] == parent["id"], (parent, child)
    assert c_serves["attributes"] == {"rpc.system": "namewire", "rpc.service": "C",
                                      "rpc.method": "leaf", "namewire.caller": "B"}
    broken = by_name["C/broken", "CLIENT"], by_name["C/broken", "SERVER"]
    assert [s["status"] for s in broken] == ["ERROR", "ERROR"]
    assert broken[1]["parent"] == broken[0]["id"] and broken[0]["trace"] != request["trace"]

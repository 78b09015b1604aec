"""The blocking facade against a real name service and a real service process."""

from __future__ import annotations

import threading
import time

import pytest

import namewire
from namewire.sync import Client
from tests.conftest import Processes, free_port

pytestmark = pytest.mark.timeout(60)


def wait_for(client: Client, name: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.rpc_call(name, "whoami")
            return
        except (namewire.NameNotFound, namewire.PeerLost):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_the_four_functions_block_and_return(procs: Processes) -> None:
    ns, _ = procs.nameservice()
    procs.service("worker.py", "A", ns)
    with Client(nameservice=ns) as client:
        wait_for(client, "A")
        assert client.rpc_call("A", "plus", 1, 2) == 3
        assert client.rpc_call_any("plus", 2, 3) == 5
        assert client.get_remote_func_provider("plus") == ["A"]
        client.send_msg("A", {"n": 1})
        assert client.get_msg(timeout=5) == ("A", {"from": "A", "echo": {"n": 1}})
        with pytest.raises(TimeoutError, match="no result within 0.2s"):
            client.get_msg(timeout=0.2)
        with pytest.raises(namewire.NameNotFound, match="Ghost"):
            client.rpc_call("Ghost", "plus", 1, 2)
        with pytest.raises(namewire.RemoteError) as failed:
            client.rpc_call("A", "fail", "boom")
        assert failed.value.remote_type == "ValueError"
        with pytest.raises(namewire.CallTimeout):
            client.rpc_call("A", "sleep_then", 5, "late", timeout=0.2)


def test_calls_from_several_threads_at_once(procs: Processes) -> None:
    ns, _ = procs.nameservice()
    procs.service("worker.py", "A", ns)
    results: list[int] = []
    with Client(nameservice=ns) as client:
        wait_for(client, "A")

        def work(k: int) -> None:
            for i in range(50):
                results.append(client.rpc_call("A", "plus", k, i))

        threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert sorted(results) == sorted(k + i for k in range(8) for i in range(50))


def test_close_stops_the_background_thread_and_refuses_more_calls(procs: Processes) -> None:
    ns, _ = procs.nameservice()
    before = {t.name for t in threading.enumerate()}
    client = Client("sync-closer", nameservice=ns)
    client.close()
    client.close()  # idempotent
    assert {t.name for t in threading.enumerate()} - before == set()
    with pytest.raises(RuntimeError, match="is closed"):
        client.rpc_call("A", "plus", 1, 2)


def test_no_name_service_is_a_clear_error_and_leaves_no_thread() -> None:
    before = threading.active_count()
    url = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(namewire.RegistryUnavailable, match="cannot reach the name service"):
        Client(nameservice=url)
    assert threading.active_count() == before


def test_every_method_runs_on_the_loop_thread_only(procs: Processes) -> None:
    """Node.rpc_call and send_msg are plain functions that read the route table and build a
    coroutine: called from the caller's thread, they would touch loop state from outside it."""
    ns, _ = procs.nameservice()
    procs.service("worker.py", "A", ns)
    with Client(nameservice=ns) as client:
        wait_for(client, "A")
        node = client.node
        seen: dict[str, set[int]] = {}
        methods = ("rpc_call", "send_msg", "rpc_call_any", "get_remote_func_provider", "get_msg")
        for method in methods:

            def spy(*args, _original=getattr(node, method), _method=method, **kwargs):
                seen.setdefault(_method, set()).add(threading.get_ident())
                return _original(*args, **kwargs)

            setattr(node, method, spy)
        assert client.rpc_call("A", "plus", 1, 2) == 3  # an open route: the plain-function path
        client.send_msg("A", "hi")
        assert client.get_msg(timeout=5) == ("A", {"from": "A", "echo": "hi"})
        assert client.rpc_call_any("plus", 2, 3) == 5
        assert client.get_remote_func_provider("plus") == ["A"]
        loop_thread = client._thread.ident
        assert loop_thread is not None and loop_thread != threading.get_ident()
        assert seen == {method: {loop_thread} for method in methods}

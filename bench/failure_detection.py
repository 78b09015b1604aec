"""Failure-detection times on real processes, printed (not asserted): kill -9 with calls pending,
a frozen (SIGSTOP) service under a 1 s lease, and a name service restart.

    .venv/bin/python bench/failure_detection.py
"""
import asyncio, os, signal, sys, time
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
import namewire
from tests.conftest import Processes, free_port
from tests.node.test_by_name import wait_for_name

async def main():
    p = Processes()
    try:
        port = free_port()
        ns, ns_proc = p.nameservice(port)
        a = p.service("worker.py", "A", ns, "--lease-ttl", "1")
        b = p.service("worker.py", "B", ns, "--lease-ttl", "1")
        me = namewire.Node("probe")
        async with me.serve(nameservice=ns, listen=None):
            await wait_for_name(me, "A"); await wait_for_name(me, "B")
            # 1. kill -9 with 100 calls pending
            calls = [asyncio.ensure_future(me.rpc_call("A", "sleep_then", 30, i)) for i in range(100)]
            await asyncio.sleep(0.3)
            t = time.monotonic(); os.kill(a.pid, signal.SIGKILL)
            await asyncio.gather(*calls, return_exceptions=True)
            print(f"kill -9: 100 pending calls failed with PeerLost after {(time.monotonic()-t)*1000:.1f} ms")
            t = time.monotonic()
            while "A" in await me.get_remote_func_provider("plus"):
                await asyncio.sleep(0.005)
            print(f"kill -9: A left get_remote_func_provider after {(time.monotonic()-t)*1000:.1f} ms")
            # 2. SIGSTOP (connections stay open): only the lease shows it
            await me.rpc_call("B", "plus", 1, 1)
            t = time.monotonic(); os.kill(b.pid, signal.SIGSTOP)
            while "B" in await me.get_remote_func_provider("plus"):
                await asyncio.sleep(0.005)
            print(f"SIGSTOP, lease ttl 1 s: B left get_remote_func_provider after {(time.monotonic()-t)*1000:.0f} ms")
            os.kill(b.pid, signal.SIGCONT)
            # 3. name service kill -9 and restart: time until B is registered again
            await asyncio.sleep(1.0)
            os.kill(ns_proc.pid, signal.SIGKILL); ns_proc.wait()
            t = time.monotonic(); p.nameservice(port)
            start_ns = time.monotonic() - t
            from namewire.registry import NameServiceClient
            while True:
                c = NameServiceClient(ns, node_name="probe2")
                try:
                    await c.start(); await c.lookup("B"); break
                except namewire.NamewireError:
                    await asyncio.sleep(0.01)
                finally:
                    await c.close()
            print(f"name service restart: B registered again {(time.monotonic()-t)*1000:.0f} ms after the restart began (process start {start_ns*1000:.0f} ms)")
    finally:
        p.stop_all()
asyncio.run(main())

"""What only the etcd backend does: URL forms, losing and regaining the lease, answering from the
last view while etcd is unreachable ("degraded"), re-reading after compaction, TLS."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator

import pytest

import namewire
from namewire.registry import (
    NameServiceClient,
    Registration,
    Registry,
    check_nameservice_url,
    open_registry,
)
from namewire.registry._etcd import EtcdRegistry
from namewire.registry._etcd_gateway import EtcdGateway
from namewire.registry._etcd_url import parse_etcd_url
from tests.conftest import ROOT, free_port
from tests.etcd_cluster import EtcdCluster, etcd_cluster, require_etcd
from tests.registry.contract.conftest import eventually

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def etcd() -> Iterator[EtcdCluster]:
    cluster = etcd_cluster(1)
    try:
        yield cluster
    finally:
        cluster.stop()


def test_the_url_chooses_the_backend() -> None:
    assert isinstance(open_registry("tcp://127.0.0.1:8010", node_name="n"), NameServiceClient)
    assert isinstance(open_registry("etcd://h1:2379,h2:2379", node_name="n"), EtcdRegistry)
    target = parse_etcd_url("etcds://a:1,b:2/team?ca=/ca.pem", tls=True)
    assert target.endpoints == ("https://a:1", "https://b:2")
    assert target.prefix == "team" and target.ca == "/ca.pem"
    assert parse_etcd_url("etcd://a:1", tls=False).prefix == "namewire"
    # Every place that checks a name-service URL before using it takes etcd:// too.
    assert check_nameservice_url("etcd://a:1,b:2") == "etcd://a:1,b:2"
    with pytest.raises(ValueError, match="unknown scheme 'etc'"):
        check_nameservice_url("etc://a:1")


def test_the_cli_takes_an_etcd_url_and_says_what_is_wrong_with_a_bad_one() -> None:
    out = subprocess.run([sys.executable, "-m", "namewire", "ls", "--nameservice", "etcd://a"],
                         capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert out.returncode == 2 and "'a' is not host:port" in out.stderr


@pytest.mark.parametrize(("url", "why"), [
    ("etcd://", "no host"),
    ("etcd://a:1,b", "'b' is not host:port"),
    ("etcd://a:1?ca=x", "ca/cert/key need etcds://"),
    ("etcds://a:1?tls=1", "unknown option"),
])
def test_a_bad_etcd_url_says_what_is_wrong(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        open_registry(url, node_name="n")


async def test_an_unreachable_etcd_is_reported_with_its_address() -> None:
    port = free_port()
    registry = open_registry(f"etcd://127.0.0.1:{port}", node_name="n")
    with pytest.raises(namewire.RegistryUnavailable, match=f"etcd at etcd://127.0.0.1:{port} "
                                                           "unreachable: http://127.0.0.1"):
        await registry.start()
    await registry.close()


def _server() -> namewire.Node:
    node = namewire.Node("Server")

    @node.function
    def plus(a: int, b: int) -> int:
        return a + b

    return node


async def test_a_lost_lease_stops_answers_until_the_name_is_claimed_again(
    etcd: EtcdCluster,
) -> None:
    server, caller = _server(), namewire.Node("Caller")
    async with server.serve(nameservice=etcd.url, unix=False, lease_ttl=3), \
            caller.serve(nameservice=etcd.url, listen=None, lease_ttl=3):
        registry = server.registry
        assert isinstance(registry, EtcdRegistry)
        changes: list[str | None] = []
        node_hook = registry.holding_changed
        assert node_hook is not None

        def record(reason: str | None) -> None:
            changes.append(reason)
            node_hook(reason)

        registry.holding_changed = record
        assert await caller.rpc_call("Server", "plus", 1, 2) == 3
        await registry.register_carried(Registration(name="Server/1", via="Server"))
        old_lease = registry._lease
        assert old_lease is not None
        gateway = EtcdGateway(parse_etcd_url(etcd.url, tls=False), timeout=2)
        try:
            await gateway.revoke(old_lease)  # as if the lease had run out
        finally:
            await gateway.close()
        await eventually(lambda: _true(len(changes) == 2), 5, "the name is lost and claimed again")
        assert changes[0] is not None and "left" in changes[0] and changes[1] is None
        assert registry._lease not in (None, old_lease)

        async def answers() -> bool:
            try:
                return await caller.rpc_call("Server", "plus", 2, 2, timeout=2) == 4
            except (namewire.NameNotFound, namewire.PeerLost):
                return False

        await eventually(answers, 5, "calls are answered again under the new lease")
        # The carried name went with the old lease and was claimed again under the new one;
        # dropping it later is not a loss of our own name.
        looking = caller.registry
        assert looking is not None

        async def carried_again() -> bool:
            try:
                return (await looking.lookup("Server/1")).via == "Server"
            except namewire.NameNotFound:
                return False

        await eventually(carried_again, 5, "the carried name is claimed under the new lease")
        await registry.deregister_carried("Server/1")
        await eventually(lambda: _gone(caller, "Server/1"), 5, "the dropped carried name leaves")
        await asyncio.sleep(0.3)
        assert len(changes) == 2 and registry._holding


async def _true(value: bool) -> bool:
    return value


async def _gone(node: namewire.Node, name: str) -> bool:
    assert node.registry is not None
    try:
        await node.registry.lookup(name)
    except namewire.NameNotFound:
        return True
    return False


async def test_frozen_etcd_answers_from_the_last_view_and_stops_the_holder_answering(
    etcd: EtcdCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """etcd SIGSTOPped: the holder cannot renew, so it stops answering under its name when the
    lease may have ended (before etcd could give the name to anyone else); look-ups are answered
    from the view; "degraded" is logged; everything comes back when etcd does."""
    caplog.set_level(logging.WARNING, "namewire.registry.etcd")
    server, caller = _server(), namewire.Node("Caller")
    async with server.serve(nameservice=etcd.url, unix=False, lease_ttl=2), \
            caller.serve(nameservice=etcd.url, listen=None, lease_ttl=2):
        assert await caller.rpc_call("Server", "plus", 1, 2) == 3
        member = etcd.members[0]
        assert member.proc is not None
        os.kill(member.proc.pid, signal.SIGSTOP)
        try:
            assert caller.registry is not None and server.registry is not None
            await eventually(lambda: _true(caller.registry.degraded is not None), 5,  # type: ignore[union-attr]
                             "the caller's registry says it is degraded")
            assert (await caller.registry.lookup("Server")).name == "Server"
            assert await caller.get_remote_func_provider("plus") == ["Server"]

            async def refused() -> bool:
                try:
                    await caller.rpc_call("Server", "plus", 1, 1, timeout=2)
                except namewire.RemoteError as exc:
                    return exc.remote_type == "NameNotFound"
                return False

            await eventually(refused, 4, "the holder stops answering once its lease may be over")
        finally:
            os.kill(member.proc.pid, signal.SIGCONT)

        async def healed() -> bool:
            try:
                ok = await caller.rpc_call("Server", "plus", 1, 1, timeout=2) == 2
            except (namewire.RemoteError, namewire.NameNotFound):  # the lease ran out meanwhile
                return False
            return ok and caller.registry.degraded is None  # type: ignore[union-attr]

        await eventually(healed, 10, "answers and a live view after etcd returns")
    assert any("degraded" in r.getMessage() for r in caplog.records)
    assert any("no longer degraded" in r.getMessage() for r in caplog.records)


async def test_a_keepalive_without_a_leader_is_unavailable_not_a_lost_lease() -> None:
    """etcd answers a failed keepalive stream with 200 and an error (no leader while it elects
    one, or without a quorum). That must read as "cannot renew now", never as "the lease is
    gone": a lease wrongly thought gone makes its holder drop its name while it still has it."""
    cluster = etcd_cluster(3)
    gateway = EtcdGateway(parse_etcd_url(cluster.url, tls=False), timeout=2)
    try:
        lease, _ = await gateway.grant(30)
        assert await gateway.keep_alive(lease) > 0
        live = cluster.members[2]
        for member in cluster.members[:2]:
            cluster.kill(member)
        unavailable = 0
        for _ in range(40):  # the last member notices its lost quorum within an election timeout
            try:
                assert await gateway.keep_alive(lease, timeout=1) > 0, "read as a lost lease"
            except namewire.RegistryUnavailable as exc:
                unavailable += 1
                assert live.client_url in str(exc)
                if unavailable >= 3:
                    break
            await asyncio.sleep(0.1)
        assert unavailable >= 3, "keepalives kept succeeding without a quorum"
    finally:
        await gateway.close()
        cluster.stop()


async def test_a_watch_behind_a_compaction_reads_the_view_again(etcd: EtcdCluster) -> None:
    """Changes made while the watch was away, then compacted: the view is read again, and a name
    that left and came back (a new epoch) is reported as left so routes to its old holder go."""
    reader = EtcdRegistry(etcd.url, node_name="Reader", ttl=3)
    first = EtcdRegistry(etcd.url, node_name="a", ttl=3)
    gone = EtcdRegistry(etcd.url, node_name="b", ttl=3)
    await reader.start()
    await first.start()
    await gone.start()
    left: list[str] = []
    reader.name_left = left.append
    try:
        await first.register(Registration("Again", ("tcp://127.0.0.1:1",), ("f",)))
        await gone.register(Registration("Gone", ("tcp://127.0.0.1:2",), ("g",)))
        await eventually(lambda: _true(set(reader._view) == {"Again", "Gone"}), 3, "view")
        # Take the watch away (the stream broke) and change everything behind its back.
        watcher = reader._watcher
        assert watcher is not None
        watcher.cancel()
        await asyncio.wait([watcher])
        await first.deregister()
        await first.register(Registration("Again", ("tcp://127.0.0.1:3",), ("f",)))
        await gone.deregister()
        late = EtcdRegistry(etcd.url, node_name="c", ttl=3)
        await late.start()
        await late.register(Registration("New", ("tcp://127.0.0.1:4",), ("h",)))
        revision, _ = await late._gateway.range(b"\0")
        await late._gateway.request("/v3/kv/compaction", {"revision": str(revision)})
        reader._watcher = None
        reader._watcher = asyncio.get_running_loop().create_task(reader._watch())
        await eventually(lambda: _true(set(reader._view) == {"Again", "New"}), 5, "re-read view")
        assert (await reader.lookup("Again")).addresses == ("tcp://127.0.0.1:3",)
        assert sorted(left) == ["Again", "Gone"]
        await late.close()
    finally:
        for registry in (reader, first, gone):
            await registry.close()


def test_namewire_ls_against_etcd_that_is_down_says_so() -> None:
    port = free_port()
    out = subprocess.run([sys.executable, "-m", "namewire", "ls", "--nameservice",
                          f"etcd://127.0.0.1:{port}"], capture_output=True, text=True,
                         timeout=30, cwd=ROOT)
    assert out.returncode == 1
    assert f"RegistryUnavailable: etcd at etcd://127.0.0.1:{port} unreachable" in out.stderr


@contextlib.contextmanager
def _tls_etcd(*, client_certs: bool) -> Iterator[tuple[int, str]]:
    """A one-member etcd serving clients over TLS with a certificate from `namewire certs`
    (requiring client certificates signed by the same CA when ``client_certs``): (port, dir)."""
    require_etcd()
    if shutil.which("openssl") is None and importlib.util.find_spec("cryptography") is None:
        pytest.skip("neither openssl nor cryptography is installed (needed to make certificates)")
    root = tempfile.mkdtemp(prefix="namewire-etcd-tls-")
    subprocess.run([sys.executable, "-m", "namewire", "certs", root, "--name", "etcd",
                    "--name", "client", "--host", "127.0.0.1", "--days", "1"],
                   check=True, capture_output=True, timeout=60, cwd=ROOT)
    port, peer = free_port(), free_port()
    clients = ["--client-cert-auth", "--trusted-ca-file", os.path.join(root, "ca.pem")]
    proc = subprocess.Popen(
        [require_etcd(), "--name", "tls", "--data-dir", os.path.join(root, "data"),
         "--listen-client-urls", f"https://127.0.0.1:{port}",
         "--advertise-client-urls", f"https://127.0.0.1:{port}",
         "--listen-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-cluster", f"tls=http://127.0.0.1:{peer}",
         "--cert-file", os.path.join(root, "etcd.pem"),
         "--key-file", os.path.join(root, "etcd-key.pem"),
         *(clients if client_certs else ()), "--log-level", "warn", "--logger", "zap"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        yield port, root
    finally:
        proc.kill()
        proc.wait(5)
        shutil.rmtree(root, ignore_errors=True)


async def _started(url: str, name: str) -> Registry:
    registry = open_registry(url, node_name=name)

    async def started() -> bool:
        try:
            await registry.start()
        except namewire.RegistryUnavailable:
            return False
        return True

    await eventually(started, 20, "etcd over TLS answers")
    return registry


async def test_etcds_speaks_tls_to_etcd() -> None:
    with _tls_etcd(client_certs=False) as (port, root):
        ca = os.path.join(root, "ca.pem")
        registry = await _started(f"etcds://127.0.0.1:{port}?ca={ca}", "T")
        await registry.register(Registration("T", ("tcp://127.0.0.1:1",), ("f",)))
        assert (await registry.lookup("T")).functions == ("f",)
        await registry.close()
        plain = open_registry(f"etcds://127.0.0.1:{port}", node_name="U")  # no CA: not trusted
        with pytest.raises(namewire.RegistryUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            await plain.start()
        await plain.close()


async def test_etcds_with_a_client_certificate() -> None:
    """etcd requiring client certificates: ``?cert=&key=`` gets in, a node without one is told
    why it cannot reach the registry, and a node serving on it is reachable by name."""
    with _tls_etcd(client_certs=True) as (port, root):
        ca, cert, key = (os.path.join(root, f) for f in ("ca.pem", "client.pem", "client-key.pem"))
        url = f"etcds://127.0.0.1:{port}?ca={ca}&cert={cert}&key={key}"
        registry = await _started(url, "Watcher")
        server, caller = _server(), namewire.Node("Caller")
        async with server.serve(nameservice=url, unix=False), \
                caller.serve(nameservice=url, listen=None):
            assert await caller.rpc_call("Server", "plus", 2, 3) == 5

            async def sees_server() -> bool:
                return "Server" in [s.registration.name for s in await registry.services()]

            await eventually(sees_server, 5, "the watcher sees Server")
        await registry.close()
        anonymous = open_registry(f"etcds://127.0.0.1:{port}?ca={ca}", node_name="U")
        with pytest.raises(namewire.RegistryUnavailable, match=f"etcd at etcds://127.0.0.1:{port}"):
            await anonymous.start()
        await anonymous.close()
        with pytest.raises(ValueError, match="key= needs cert="):
            open_registry(f"etcds://127.0.0.1:{port}?key={key}", node_name="V")
        with pytest.raises(ValueError, match="cannot read the etcd client certificate"):
            open_registry(f"etcds://127.0.0.1:{port}?cert={root}/missing.pem", node_name="W")

"""Real etcd servers for the tests: members on free loopback ports (or given hosts), temporary data
directories, always stopped and removed. Skips with a clear message when etcd is not installed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from tests.conftest import free_port

ETCD = shutil.which("etcd")


def require_etcd() -> str:
    if ETCD is None:
        pytest.skip("etcd is not installed (Debian package etcd-server; .ci/apt-packages has it)")
    return ETCD


@dataclass
class Member:
    name: str
    host: str
    client_port: int
    peer_port: int
    data_dir: str
    wrap: Sequence[str] = ()  # e.g. ("ip", "netns", "exec", "h1"): where the member runs
    proc: subprocess.Popen[bytes] | None = None
    log_path: str = ""

    @property
    def client_url(self) -> str:
        return f"http://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://{self.host}:{self.peer_port}"


@dataclass
class EtcdCluster:
    """``members`` etcd processes forming one cluster; `url` is the namewire etcd:// URL."""

    members: list[Member]
    root: str
    cluster_token: str = field(default_factory=lambda: f"t{os.getpid()}-{time.monotonic_ns()}")

    @property
    def url(self) -> str:
        return "etcd://" + ",".join(f"{m.host}:{m.client_port}" for m in self.members)

    def start(self, member: Member, *, state: str = "new") -> None:
        cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        log = open(member.log_path, "ab")
        try:
            member.proc = subprocess.Popen(
                [*member.wrap, require_etcd(), "--name", member.name, "--data-dir", member.data_dir,
                 "--listen-client-urls", member.client_url,
                 "--advertise-client-urls", member.client_url,
                 "--listen-peer-urls", member.peer_url,
                 "--initial-advertise-peer-urls", member.peer_url,
                 "--initial-cluster", cluster, "--initial-cluster-state", state,
                 "--initial-cluster-token", self.cluster_token,
                 "--heartbeat-interval", "100", "--election-timeout", "1000",
                 "--log-level", "warn", "--logger", "zap"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        finally:
            log.close()

    def kill(self, member: Member) -> None:
        if member.proc is not None and member.proc.poll() is None:
            member.proc.send_signal(signal.SIGKILL)
            member.proc.wait(5)

    def wait_healthy(self, members: Sequence[Member] | None = None, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        for member in members or self.members:
            while True:
                if member.proc is not None and member.proc.poll() is not None:
                    raise RuntimeError(f"etcd {member.name} exited: {self.log_of(member)}")
                if _healthy(member):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"etcd {member.name} not healthy: {self.log_of(member)}")
                time.sleep(0.05)

    def log_of(self, member: Member) -> str:
        try:
            with open(member.log_path, errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        # SIGKILL: the data goes with the directory, and a member whose peers are already gone
        # would take seconds to stop politely.
        for member in self.members:
            self.kill(member)
        shutil.rmtree(self.root, ignore_errors=True)


_HEALTH = """
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1] + "/health", timeout=0.5) as r:
        sys.exit(0 if b'"true"' in r.read() else 1)
except OSError:
    sys.exit(1)
"""


def _healthy(member: Member) -> bool:
    """Whether the member says it is healthy (asked from where it runs: its host's namespace)."""
    argv = [*member.wrap, sys.executable, "-c", _HEALTH, member.client_url]
    return subprocess.run(argv, capture_output=True, timeout=10).returncode == 0


def etcd_cluster(
    size: int = 1, hosts: Sequence[str] | None = None, wraps: Sequence[Sequence[str]] | None = None
) -> EtcdCluster:
    """Start ``size`` members (on 127.0.0.1, or one per host of ``hosts``) and wait until healthy.

    The caller stops it (`EtcdCluster.stop`) in a finally or fixture.
    """
    require_etcd()
    root = tempfile.mkdtemp(prefix="namewire-etcd-")
    members = []
    for i in range(size):
        host = hosts[i] if hosts else "127.0.0.1"
        ports = (free_port(), free_port()) if not hosts else (2379, 2380)
        members.append(Member(f"m{i}", host, ports[0], ports[1], os.path.join(root, f"m{i}"),
                              tuple(wraps[i]) if wraps else (), log_path=os.path.join(root, f"m{i}.log")))
    cluster = EtcdCluster(members, root)
    try:
        for member in members:
            cluster.start(member)
        cluster.wait_healthy()
    except BaseException:
        cluster.stop()
        raise
    return cluster

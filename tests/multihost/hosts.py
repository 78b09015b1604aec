"""Hosts made of network namespaces: each has its own network stack, address and hostname.

Layout: a "switch" namespace holds a bridge; each host namespace is joined to it by a veth pair
(``eth0`` inside the host) and has address ``10.77.0.N/24``. Processes of a host run under
``ip netns exec`` in a UTS namespace of their own whose hostname is the host's name, so
`namewire.registry.host_id` differs per host and peers use TCP, not the shared filesystem's unix
sockets. Nothing is added to the machine's own namespace. `Hosts.remove` deletes every namespace
(which removes the veths and the bridge) and kills what ran in them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from tests.conftest import ROOT

SUBNET = "10.77.0"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=10)


def namespaces_or_skip() -> None:
    """Skip the test, saying why, where network namespaces cannot be made."""
    if os.geteuid() != 0:
        pytest.skip("multi-host tests need root to create network namespaces")
    if shutil.which("ip") is None or shutil.which("unshare") is None:
        pytest.skip("multi-host tests need iproute2 (ip) and unshare")
    probe = f"nwprobe{os.getpid()}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {made.stderr.strip()}")
    _ip("netns", "del", probe, check=False)


@dataclass
class Host:
    name: str
    netns: str
    address: str
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def wrap(self) -> list[str]:
        """The command prefix that runs a program on this host."""
        return ["ip", "netns", "exec", self.netns, "unshare", "--uts", "sh", "-c",
                'hostname "$0" && exec "$@"', self.name]

    def sh(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a short command in this host's network namespace (ip, iptables)."""
        return subprocess.run(["ip", "netns", "exec", self.netns, *argv], capture_output=True,
                              text=True, check=check, timeout=10)

    def start(self, *argv: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [*self.wrap(), *argv], cwd=ROOT, text=True,
            # These hosts' addresses are not loopback: plain TCP there is what these tests
            # measure, so they opt out of the refusal to listen without TLS or a secret.
            env={**os.environ, "PYTHONUNBUFFERED": "1", "NAMEWIRE_INSECURE": "1", **(env or {})},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def python(self, *argv: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return self.start(sys.executable, *argv, env=env)

    def service(self, app: str, name: str, nameservice: str, *extra: str) -> subprocess.Popen[str]:
        """``namewire run`` of a test app, listening on this host's address."""
        return self.python("-m", "namewire", "run", str(ROOT / "tests" / "apps" / app),
                           "--name", name, "--nameservice", nameservice, "--no-unix",
                           "--listen", f"tcp://{self.address}:0", "--log-level", "WARNING",
                           *extra)

    def nameservice(self, port: int = 8010, address: str | None = None) -> str:
        """Start the built-in name service here; return its URL once it accepts connections."""
        address = address or self.address
        url = f"tcp://{address}:{port}"
        self.python("-m", "namewire", "nameservice", "--listen", url, "--log-level", "WARNING")
        self.wait_listening(address, port)
        return url

    def wait_listening(self, address: str, port: int, timeout: float = 10.0) -> None:
        """Wait until something accepts on ``address:port``, as seen from this host."""
        code = (f"import socket,time\nend=time.time()+{timeout}\nwhile True:\n try:\n"
                f"  socket.create_connection(('{address}',{port}),0.2).close();break\n"
                " except OSError:\n  assert time.time()<end;time.sleep(0.02)\n")
        self.sh(sys.executable, "-c", code)

    def kill_all(self) -> list[int]:
        """kill -9 every process in this host's namespace (all of them were started here)."""
        pids = [int(p) for p in _ip("netns", "pids", self.netns).stdout.split()]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        return pids

    def cut(self) -> None:
        """Partition: drop every packet in and out of eth0 (loopback stays)."""
        for chain in ("INPUT", "OUTPUT"):
            self.sh("iptables", "-I", chain, "!", "-i" if chain == "INPUT" else "-o", "lo",
                    "-j", "DROP")

    def heal(self) -> None:
        for chain in ("INPUT", "OUTPUT"):
            self.sh("iptables", "-D", chain, "!", "-i" if chain == "INPUT" else "-o", "lo",
                    "-j", "DROP")


@dataclass
class Hosts:
    hosts: list[Host]
    switch: str

    def remove(self) -> None:
        for host in self.hosts:
            host.kill_all()
            for proc in host.procs:
                if proc.stdout is not None:
                    proc.stdout.close()
        for host in self.hosts:
            _ip("netns", "del", host.netns, check=False)
        _ip("netns", "del", self.switch, check=False)


def make_hosts(count: int = 3) -> Hosts:
    """``count`` hosts h1..hN on one bridge; the caller removes them (`Hosts.remove`) in a finally."""
    namespaces_or_skip()
    tag = f"nw{os.getpid() % 100000}"
    switch = f"{tag}-sw"
    hosts = Hosts([], switch)
    try:
        _ip("netns", "add", switch)
        _ip("-n", switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", switch, "link", "set", "br0", "up")
        for i in range(1, count + 1):
            host = Host(f"h{i}", f"{tag}-h{i}", f"{SUBNET}.{i}")
            hosts.hosts.append(host)
            _ip("netns", "add", host.netns)
            outer = f"{tag}h{i}"
            _ip("link", "add", outer, "netns", switch, "type", "veth", "peer", "name", "eth0",
                "netns", host.netns)
            _ip("-n", switch, "link", "set", outer, "master", "br0")
            _ip("-n", switch, "link", "set", outer, "up")
            _ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            _ip("-n", host.netns, "link", "set", "eth0", "up")
            _ip("-n", host.netns, "link", "set", "lo", "up")
        wait_reachable(hosts.hosts)
    except BaseException:
        hosts.remove()
        raise
    return hosts


# Reachable: a TCP connect to a closed port is refused (a reset came back), not timed out. A
# probe in Python rather than ping, which a minimal Debian (and so a fresh CI machine) lacks.
_PROBE = """
import socket, sys
s = socket.socket()
s.settimeout(1)
try:
    s.connect((sys.argv[1], 9))
except ConnectionRefusedError:
    sys.exit(0)
except OSError:
    sys.exit(1)
sys.exit(0)
"""


def wait_reachable(hosts: Sequence[Host], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    for host in hosts[1:]:
        while hosts[0].sh(sys.executable, "-c", _PROBE, host.address, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{host.name} ({host.address}) unreachable from {hosts[0].name}")
            time.sleep(0.1)

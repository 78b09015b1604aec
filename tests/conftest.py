"""Shared fixtures: free ports, and real processes (name service, services) that are always reaped."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.etcd_cluster import EtcdCluster

ROOT = Path(__file__).resolve().parent.parent
APPS = Path(__file__).resolve().parent / "apps"


def _ephemeral_ports() -> range:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = map(int, f.read().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


_EPHEMERAL = _ephemeral_ports()
_PORTS = random.Random(os.getpid())


def free_port() -> int:
    """A loopback TCP port free now, for a server a test starts a moment later.

    Chosen below the kernel's ephemeral range: a port from that range (what binding port 0
    gives) can be taken in between as the local port of any outgoing connection, which a test
    opening thousands of connections does (seen as "address already in use" under load).
    """
    for _ in range(200):
        port = _PORTS.randrange(10000, _EPHEMERAL.start)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[str] | None = None, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listened on port {port} within {timeout}s")


class Processes:
    """Starts subprocesses and kills every one of them at teardown (by PID)."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[str]] = []

    def start(self, *argv: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, *argv],
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.started.append(proc)
        return proc

    def nameservice(self, port: int | None = None) -> tuple[str, subprocess.Popen[str]]:
        port = port or free_port()
        url = f"tcp://127.0.0.1:{port}"
        proc = self.start("-m", "namewire", "nameservice", "--listen", url, "--log-level", "WARNING")
        wait_port(port, proc)
        return url, proc

    def service(
        self, app: str, name: str, nameservice: str, *extra: str
    ) -> subprocess.Popen[str]:
        """``namewire run tests/apps/APP --name NAME`` against ``nameservice``."""
        return self.start(
            "-m", "namewire", "run", str(APPS / app), "--name", name,
            "--nameservice", nameservice, "--log-level", "WARNING", *extra,
        )

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in reversed(self.started):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


@pytest.fixture
def procs() -> Iterator[Processes]:
    processes = Processes()
    try:
        yield processes
    finally:
        processes.stop_all()


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[EtcdCluster]:
    """One real etcd member for the whole run (skips when etcd is not installed); the tests that
    use it each take a key prefix of their own."""
    from tests.etcd_cluster import etcd_cluster  # it imports this module

    cluster = etcd_cluster(1)
    try:
        yield cluster
    finally:
        cluster.stop()

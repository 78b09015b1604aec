"""Processes, ports and CPUs for the benchmark runner.

Everything the runner starts goes through a `ProcessSet`, which kills what it started (by the
process-group id it created for that child, never by name) when its ``with`` block ends, however
it ends.  Servers are pinned to CPU 0 and clients to CPU 1 with ``taskset`` when the machine has
two CPUs and taskset exists, so a server never competes with its own load generator.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

SERVER_CPU = 0
CLIENT_CPU = 1
# Enough descriptors for 10,000 idle connections plus the process's own files.
WANTED_NOFILE = 65536


def raise_nofile() -> int:
    """Raises RLIMIT_NOFILE as far as allowed and returns the soft limit now in force.

    Tries 65536 for both limits first (root with CAP_SYS_RESOURCE may raise the hard limit); a
    sandbox that forbids that still lets the soft limit go up to the hard one.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= WANTED_NOFILE:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (WANTED_NOFILE, max(hard, WANTED_NOFILE)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _child_setup() -> None:
    # Runs in the child between fork and exec: its own limit, inherited by whatever it execs.
    raise_nofile()


def can_pin() -> bool:
    """True when servers and clients can get a CPU each."""
    return shutil.which("taskset") is not None and len(os.sched_getaffinity(0)) >= 2


def pinned(cpu: int, argv: Sequence[str]) -> list[str]:
    """``argv`` run on ``cpu`` when pinning is possible, as is otherwise."""
    if can_pin():
        return ["taskset", "-c", str(cpu), *argv]
    return list(argv)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picked it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: Path, lines: int = 3) -> str:
    """The last lines of a log, joined on one line, for a failure reason."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])[:400]


class PeerFailed(Exception):
    """A peer could not be started or measured; the message is the reason shown in the table."""


class ProcessSet:
    """Starts processes and guarantees they are gone when the ``with`` block ends.

    Each child gets its own session (so its process-group id is its pid); on exit the group is
    sent SIGTERM, then SIGKILL after a grace period, which also reaches a child's own children
    (``namewire run`` may fork).  Output goes to a log file per process under ``log_dir``.
    """

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []
        log_dir.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> ProcessSet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()

    def start(
        self, name: str, argv: Sequence[str], *, stdin: bool = False, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Starts ``argv``; stdout and stderr go to ``<log_dir>/<name>.log``."""
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "wb") as log:
            try:
                proc = subprocess.Popen(
                    list(argv),
                    stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=cwd,
                    start_new_session=True,
                    preexec_fn=_child_setup,
                )
            except OSError as exc:
                raise PeerFailed(f"cannot start {argv[0]}: {exc}") from exc
        proc.log_path = log_path  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 2.0) -> None:
        """Ends one child's process group: SIGTERM, then SIGKILL after ``grace`` seconds."""
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        # Children of the child may outlive it; the group id is still ours to clean up.
        _signal_group(proc.pid, signal.SIGKILL)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        """Stops every child still registered, newest first (clients before their servers)."""
        for proc in reversed(list(self.procs)):
            try:
                self.stop(proc)
            except Exception:  # cleanup must reach every child
                pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def log_of(proc: subprocess.Popen[bytes]) -> Path:
    """The log file a `ProcessSet` child writes to."""
    return proc.log_path  # type: ignore[attr-defined,no-any-return]


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Waits until 127.0.0.1:``port`` accepts connections; raises `PeerFailed` if ``proc`` dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PeerFailed(f"exited with code {proc.returncode}: {tail(log_of(proc))}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise PeerFailed(f"not listening on port {port} after {timeout:.0f} s: {tail(log_of(proc))}")


def listening_ports(pid: int) -> set[int]:
    """TCP ports on which process ``pid`` holds a listening socket (from /proc, no tools)."""
    inodes: set[str] = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
    except OSError:
        return set()
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            # State 0A is LISTEN; column 9 is the socket inode.
            if len(cols) > 9 and cols[3] == "0A" and cols[9] in inodes:
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (a launcher such as ``namewire run`` may fork the node)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def pid_listening_on(root_pid: int, port: int) -> int:
    """The process in ``root_pid``'s tree that listens on ``port`` (the one to measure)."""
    for pid in process_tree(root_pid):
        if port in listening_ports(pid):
            return pid
    raise PeerFailed(f"no process under pid {root_pid} listens on port {port}")


def vm_rss_kb(pid: int) -> int:
    """Resident set size of ``pid`` in KiB, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise PeerFailed(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid`` (all its threads), from /proc/PID/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command name: state is field 3, so utime (14) and stime (15) sit at 11 and 12.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs have spent busy since boot (everything but idle and iowait).

    Compared with what the server and the client used over a point, it shows how much CPU other
    work on the machine took meanwhile: the noise in that point.
    """
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    """CPU seconds used by this process's reaped children: a finished client's cost."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def open_fds(pid: int) -> int:
    """How many descriptors ``pid`` holds: each accepted connection is one."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def run_captured(argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Runs a short command to completion (own session, killed on timeout); output captured."""
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_child_setup,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise PeerFailed(f"timed out after {timeout:.0f} s: {err.strip()[-300:]}") from None
    finally:
        _signal_group(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)

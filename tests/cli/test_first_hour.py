"""What a new user meets in the first hour: start-up order, Ctrl-C, failures and typos on the
command line. Real processes throughout (a name service, services, the ``namewire`` command)."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import APPS, ROOT, Processes, free_port

pytestmark = pytest.mark.timeout(60)


def namewire(*argv: str, env: dict[str, str] | None = None,
             timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "namewire", *argv],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
        env={**os.environ, **(env or {})},
    )


class Output:
    """What a process has written so far (stdout and stderr together), read without blocking."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        self.proc = proc
        self.fd = proc.stdout.fileno()
        self.text = ""

    def wait_for(self, needle: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{needle!r} never appeared in:\n{self.text}")
            ready, _, _ = select.select([self.fd], [], [], min(left, 0.2))
            if ready:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    raise AssertionError(f"exited before {needle!r} appeared:\n{self.text}")
                self.text += chunk.decode(errors="replace")
        return self.text

    def rest(self) -> str:
        """Everything, once the process has exited."""
        self.proc.wait(10)
        while chunk := os.read(self.fd, 65536):
            self.text += chunk.decode(errors="replace")
        return self.text


def write_app(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(body)
    return str(path)


# -- start-up and shutdown ---------------------------------------------------------------------


def test_a_service_started_before_the_name_service_waits_and_registers(procs: Processes) -> None:
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    service = procs.start("-m", "namewire", "run", str(APPS / "worker.py"), "--name", "Early",
                          "--nameservice", url, "--log-level", "INFO")
    out = Output(service)
    out.wait_for("waiting up to 10s for the name service")
    time.sleep(0.8)  # a name service that comes up late, as with `a & b &` in a shell
    procs.nameservice(port)
    out.wait_for("reached the name service after")
    out.wait_for("Early serving on")
    assert namewire("call", "Early", "plus", "1", "2", "--nameservice", url).stdout.strip() == "3"


def test_the_start_up_wait_is_bounded_and_the_error_says_how_long(tmp_path: Path) -> None:
    url = f"tcp://127.0.0.1:{free_port()}"
    began = time.monotonic()
    out = namewire("run", str(APPS / "worker.py"), "--nameservice", url,
                   "--wait-for-nameservice", "0.6", "--log-level", "WARNING")
    assert time.monotonic() - began < 10
    assert out.returncode == 1
    assert f"cannot reach the name service at {url}" in out.stderr
    assert "gave up after trying" in out.stderr and "over 0.6s" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_second_signal_ends_the_wait_for_calls_in_flight(procs: Processes) -> None:
    ns, _ = procs.nameservice()
    service = procs.service("worker.py", "Slow", ns, "--grace", "30", "--log-level", "INFO")
    out = Output(service)
    out.wait_for("Slow serving on")
    caller = procs.start("-m", "namewire", "call", "Slow", "sleep_then", "30", "1",
                         "--timeout", "40", "--nameservice", ns)
    out.wait_for("sleep_then(30) running")
    service.send_signal(signal.SIGINT)
    out.wait_for("SIGINT received: stopping")
    out.wait_for("Slow stopping, waiting up to 30s for 1 call in flight")
    began = time.monotonic()
    service.send_signal(signal.SIGINT)
    assert service.wait(10) == 0
    assert time.monotonic() - began < 5, "the second signal did not end the 30 s wait"
    text = out.rest()
    assert "SIGINT received again: not waiting any longer" in text
    assert "cancelling 1 call still running" in text
    assert "Traceback" not in text
    assert caller.wait(10) == 1  # the caller was told: the service went away


def test_a_signal_as_main_returns_is_a_clean_exit(tmp_path: Path, procs: Processes) -> None:
    ns, _ = procs.nameservice()
    app = write_app(tmp_path, "quick.py", (
        "import os, signal, namewire\n"
        "node = namewire.Node('Quick')\n"
        "async def main(node):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)  # handled once main has returned\n"
    ))
    out = namewire("run", app, "--nameservice", ns, "--log-level", "WARNING")
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr and "CancelledError" not in out.stderr


def test_stale_unix_sockets_are_removed_at_start_and_ours_on_stop(procs: Processes) -> None:
    directory = Path(tempfile.gettempdir()) / f"namewire-{os.getuid()}"
    directory.mkdir(mode=0o700, exist_ok=True)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid whose process is gone, as a killed node's
    stale = directory / f"Killed-{gone.pid}.sock"
    alive = directory / f"Binding-{os.getpid()}.sock"  # between bind and listen: refused too
    with socket.socket(socket.AF_UNIX) as dead, socket.socket(socket.AF_UNIX) as binding:
        dead.bind(str(stale))
        dead.close()  # closed without unlinking: what kill -9 leaves
        binding.bind(str(alive))
        try:
            _check_stale_sockets_removed(procs, stale, alive)
        finally:
            alive.unlink(missing_ok=True)
            stale.unlink(missing_ok=True)


def _check_stale_sockets_removed(procs: Processes, stale: Path, alive: Path) -> None:
    assert stale.exists() and alive.exists()
    ns, _ = procs.nameservice()
    service = procs.service("worker.py", "Tidy", ns, "--log-level", "INFO")
    out = Output(service)
    out.wait_for("Tidy serving on")
    assert not stale.exists()
    assert alive.exists(), "removed the socket of a live process"
    [ours] = [a for a in out.text.split("serving on ", 1)[1].split("\n")[0].split(", ")
              if a.startswith("unix://")]
    path = ours.removeprefix("unix://").split(" ")[0]
    assert Path(path).exists()
    service.send_signal(signal.SIGTERM)
    assert service.wait(10) == 0
    assert not Path(path).exists()


# -- failures logged where they happen ---------------------------------------------------------


def test_a_failing_remote_function_is_logged_by_the_service(procs: Processes) -> None:
    ns, _ = procs.nameservice()
    service = procs.service("worker.py", "Faulty", ns, "--log-level", "INFO")
    out = Output(service)
    out.wait_for("Faulty serving on")
    call = namewire("call", "Faulty", "fail", '"boom"', "--traceback", "--nameservice", ns)
    assert call.returncode == 1
    assert "namewire: error: RemoteError:" in call.stderr and "ValueError: boom" in call.stderr
    assert "traceback in Faulty:" in call.stderr
    assert 'raise ValueError(message)' in call.stderr  # the service's own source line
    logged = out.wait_for("ValueError: boom\n")
    assert "ERROR" in logged and "[Faulty]" in logged
    assert "remote function 'fail' called by 'namewire-cli-" in logged
    assert "raised ValueError: boom" in logged and "Traceback (most recent call last)" in logged


def test_main_failing_is_logged_as_json_with_node_and_traceback(tmp_path: Path,
                                                                  procs: Processes) -> None:
    ns, _ = procs.nameservice()
    app = write_app(tmp_path, "broken.py", (
        "import namewire\n"
        "node = namewire.Node('Broken')\n"
        "async def main(node):\n"
        "    await node.rpc_call('Nobody', 'f')\n"
    ))
    log_file = tmp_path / "broken.log"
    out = namewire("run", app, "--nameservice", ns, "--log-format", "json",
                   "--log-file", str(log_file))
    assert out.returncode == 1
    [line] = out.stderr.splitlines()  # one line for the terminal, the details in the log
    assert "Broken: main(node) raised NameNotFound: no service named 'Nobody'" in line
    records = [json.loads(x) for x in log_file.read_text().splitlines()]
    [fatal] = [r for r in records if r["level"] == "ERROR"]
    assert fatal["node"] == "Broken"
    assert "main(node) raised NameNotFound" in fatal["message"]
    assert "Traceback" in fatal["exc"] and "broken.py\", line 4, in main" in fatal["exc"]


def test_an_app_that_raises_at_import_is_one_line(tmp_path: Path) -> None:
    app = write_app(tmp_path, "typo.py", "import namewire\n\nnode = namewire.Nod('X')\n")
    out = namewire("run", app)
    assert out.returncode == 1
    [line] = out.stderr.splitlines()
    assert line.startswith("namewire: error: ") and "typo.py failed at import: line 3:" in line
    assert "AttributeError" in line


# -- the command line --------------------------------------------------------------------------


@pytest.mark.parametrize(("argv", "env", "expected"), [
    (["ls", "--nameservice", "localhost:8010"], {},
     "argument --nameservice: 'localhost:8010' is not an address URL; write tcp://localhost:8010"),
    (["ls", "--nameservice", "notaurl"], {}, "bad address 'notaurl'"),
    (["run", "tests/apps/worker.py", "--listen", "localhost:9000"], {},
     "argument --listen: 'localhost:9000' is not an address URL; write tcp://localhost:9000"),
    (["call", "A", "f"], {"NAMEWIRE_NAMESERVICE": "127.0.0.1:8010"},
     ("$NAMEWIRE_NAMESERVICE (from the environment): '127.0.0.1:8010' is not an address URL; "
      "write tcp://127.0.0.1:8010")),
    (["nameservice", "--listen", "localhost:8010"], {}, "write tcp://localhost:8010"),
    (["lss"], {}, "invalid choice: 'lss'"),
])
def test_address_mistakes_are_one_line_usage_errors(argv: list[str], env: dict[str, str],
                                                    expected: str) -> None:
    out = namewire(*argv, env=env)
    assert out.returncode == 2
    [line] = out.stderr.splitlines()
    assert line.startswith("namewire: error: ") and expected in line


def test_bare_namewire_prints_help_and_version_names_the_sockets() -> None:
    bare = namewire()
    assert bare.returncode == 0 and "usage: namewire" in bare.stdout and "nameservice" in bare.stdout
    version = namewire("--version")
    assert version.returncode == 0
    assert "sockets: C reactor" in version.stdout or "pure-asyncio sockets (" in version.stdout
    bench_help = namewire("bench", "--help")  # bench/run.py, named as the user typed it
    assert bench_help.returncode == 0 and bench_help.stdout.startswith("usage: namewire bench")
    call_help = namewire("call", "--help").stdout
    assert "the service to call" in call_help and "each one JSON value" in call_help
    off = namewire("--version", env={"NAMEWIRE_NATIVE": "0"})
    assert "pure-asyncio sockets (C reactor turned off by NAMEWIRE_NATIVE=0)" in off.stdout


def test_name_taken_says_who_holds_it(procs: Processes) -> None:
    ns, _ = procs.nameservice()
    holder = procs.service("worker.py", "Held", ns, "--log-level", "INFO")
    Output(holder).wait_for("Held serving on")
    out = namewire("run", str(APPS / "worker.py"), "--name", "Held", "--nameservice", ns)
    assert out.returncode == 1
    [line] = out.stderr.splitlines()
    assert "name 'Held' is held by a live service at tcp://127.0.0.1:" in line
    assert f"pid {holder.pid}" in line and "--name" in line


def test_a_second_name_service_on_a_busy_port_says_one_is_probably_running(
    procs: Processes,
) -> None:
    ns, _ = procs.nameservice()
    out = namewire("nameservice", "--listen", ns)
    assert out.returncode == 1
    assert "a name service is probably running there already" in out.stderr
    assert "Traceback" not in out.stderr

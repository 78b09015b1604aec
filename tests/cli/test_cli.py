"""The ``namewire`` command against a real name service and a real service process."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, Processes, free_port

pytestmark = pytest.mark.timeout(60)


def namewire(*argv: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "namewire", *argv],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )


def wait_listed(ns: str, name: str, timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        out = namewire("ls", "--json", "--nameservice", ns)
        rows = json.loads(out.stdout) if out.returncode == 0 else []
        if any(r["name"] == name for r in rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} never listed: {out.stdout} {out.stderr}")
        time.sleep(0.1)


def test_help_lists_every_command() -> None:
    out = namewire("--help")
    assert out.returncode == 0
    for command in ("run", "nameservice", "ls", "call", "send", "demo", "bench"):
        assert command in out.stdout
    assert "tcp://127.0.0.1:8010" in out.stdout


def test_ls_call_and_send(procs: Processes) -> None:
    ns, _ = procs.nameservice()
    worker = procs.service("worker.py", "Calc", ns)
    rows = wait_listed(ns, "Calc")
    calc = next(r for r in rows if r["name"] == "Calc")
    assert "plus" in calc["functions"]
    assert any(a.startswith("tcp://127.0.0.1:") for a in calc["addresses"])
    assert any(a.startswith("unix://") for a in calc["addresses"])

    table = namewire("ls", "--nameservice", ns)
    assert table.returncode == 0
    header, row = table.stdout.splitlines()[:2]
    assert header.split() == ["NAME", "ADDRESSES", "FUNCTIONS", "REGISTERED", "FOR", "LEASE",
                              "EXPIRES", "IN"]
    assert row.startswith("Calc ") and "plus" in row and row.endswith("s")

    assert namewire("call", "Calc", "plus", "1", "2", "--nameservice", ns).stdout.strip() == "3"
    joined = namewire("call", "Calc", "plus", '"a"', '"b"', "--nameservice", ns)
    assert joined.stdout.strip() == '"ab"'

    missing = namewire("call", "Calc", "minus", "1", "2", "--nameservice", ns)
    assert missing.returncode == 1
    assert "NoSuchFunction" in missing.stderr and "minus" in missing.stderr
    ghost = namewire("call", "Ghost", "plus", "1", "2", "--nameservice", ns)
    assert ghost.returncode == 1 and "no service named 'Ghost'" in ghost.stderr
    not_json = namewire("call", "Calc", "plus", "one", "2", "--nameservice", ns)
    assert not_json.returncode == 2 and "is not JSON" in not_json.stderr

    # The worker's main() stops when it receives "stop": a message by name from the command line.
    assert namewire("send", "Calc", '"stop"', "--nameservice", ns).returncode == 0
    assert worker.wait(10) == 0


def test_without_a_name_service_the_error_says_how_to_start_one() -> None:
    url = f"tcp://127.0.0.1:{free_port()}"
    out = namewire("ls", "--nameservice", url)
    assert out.returncode == 1
    assert f"cannot reach the name service at {url}" in out.stderr
    assert "namewire nameservice" in out.stderr


def test_run_reports_a_bad_app_clearly(tmp_path) -> None:
    out = namewire("run", str(tmp_path / "missing.py"))
    assert out.returncode == 2 and "no such file" in out.stderr
    app = tmp_path / "empty.py"
    app.write_text("x = 1\n")
    out = namewire("run", str(app))
    assert out.returncode == 2 and "defines no module-level `node" in out.stderr


def test_nameservice_rejects_a_bad_address() -> None:
    out = namewire("nameservice", "--listen", "http://nope")
    assert out.returncode == 2
    assert "unknown scheme 'http'" in out.stderr


def test_run_writes_a_json_log_file_naming_the_node(procs: Processes, tmp_path) -> None:
    ns, _ = procs.nameservice()
    log_file = tmp_path / "worker.log"
    worker = procs.start(
        "-m", "namewire", "run", "tests/apps/worker.py", "--name", "Logged",
        "--nameservice", ns, "--log-file", str(log_file), "--log-format", "json",
        "--log-level", "INFO",
    )
    wait_listed(ns, "Logged")
    assert namewire("send", "Logged", '"stop"', "--nameservice", ns).returncode == 0
    assert worker.wait(10) == 0
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    serving = [r for r in records if "serving on" in r["message"]]
    assert serving and serving[0]["node"] == "Logged"
    assert serving[0]["level"] == "INFO"


def test_run_advertise_is_what_ls_shows(procs: Processes) -> None:
    ns, _ = procs.nameservice()
    procs.service("worker.py", "Natted", ns, "--listen", "tcp://0.0.0.0:0", "--no-unix",
                  "--advertise", "tcp://203.0.113.7:7000", "--insecure")
    rows = wait_listed(ns, "Natted")
    assert next(r for r in rows if r["name"] == "Natted")["addresses"] == ["tcp://203.0.113.7:7000"]
    bad = namewire("run", "tests/apps/worker.py", "--advertise", "203.0.113.7:7000")
    assert bad.returncode == 2
    assert "argument --advertise: '203.0.113.7:7000' is not an address URL" in bad.stderr

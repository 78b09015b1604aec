"""The echo example pair, run as real processes the way the benchmark runs them."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_echo_client_against_echo_server() -> None:
    server = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "echo_server.py"), "--listen", "tcp://127.0.0.1:0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        match = re.search(r"listening on (tcp://\S+)", first)
        assert match, f"unexpected first line from the server: {first!r}"
        client = subprocess.run(
            [
                sys.executable,
                str(EXAMPLES / "echo_client.py"),
                "--connect",
                match.group(1),
                "10",
                "--seconds",
                "2",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert client.returncode == 0, client.stderr
        average = re.search(r"average: (\d+) echoes/s .*10 connections", client.stdout)
        assert average, client.stdout
        assert int(average.group(1)) > 0
        server.send_signal(signal.SIGINT)
        assert server.wait(10) == 0
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(10)

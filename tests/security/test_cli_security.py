"""The command line: `namewire certs`, secure defaults, and a TLS + secret cluster run by options and
environment variables."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import APPS, ROOT, Processes, free_port, wait_port


def namewire(*argv: str, env: dict[str, str] | None = None,
             timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "namewire", *argv], cwd=ROOT, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, **(env or {})}, check=False,
    )


def test_certs_writes_a_ca_node_certificates_and_a_secret(tmp_path: Path) -> None:
    out = namewire("certs", str(tmp_path / "c"), "--name", "nameservice", "--name", "Worker")
    assert out.returncode == 0, out.stderr
    files = {Path(line).name for line in out.stdout.split()}
    assert files == {"ca.pem", "ca-key.pem", "nameservice.pem", "nameservice-key.pem",
                     "Worker.pem", "Worker-key.pem", "secret"}
    for private in ("ca-key.pem", "nameservice-key.pem", "Worker-key.pem", "secret"):
        assert stat.S_IMODE((tmp_path / "c" / private).stat().st_mode) == 0o600, private
    # Run again for another node: the CA and the secret are kept.
    ca = (tmp_path / "c" / "ca.pem").read_bytes()
    again = namewire("certs", str(tmp_path / "c"), "--name", "Later")
    assert again.returncode == 0 and (tmp_path / "c" / "ca.pem").read_bytes() == ca
    assert {Path(line).name for line in again.stdout.split()} == {"Later.pem", "Later-key.pem"}


def test_a_listener_other_hosts_reach_needs_tls_or_a_secret(procs: Processes) -> None:
    port = free_port()
    refused = namewire("nameservice", "--listen", f"tcp://0.0.0.0:{port}")
    assert refused.returncode == 2
    assert "refusing to listen on tcp://0.0.0.0:" in refused.stderr
    assert "--insecure" in refused.stderr and "namewire certs" in refused.stderr
    proc = procs.start("-m", "namewire", "nameservice", "--listen", f"tcp://0.0.0.0:{port}",
                       "--insecure", "--log-level", "ERROR")
    wait_port(port, proc)


def test_a_cluster_over_tls_with_a_secret_from_options_and_environment(
    procs: Processes, tmp_path: Path
) -> None:
    certs = tmp_path / "c"
    made = namewire("certs", str(certs), "--name", "nameservice", "--name", "Worker",
                    "--name", "cli")
    assert made.returncode == 0, made.stderr
    secret = str(certs / "secret")
    port = free_port()
    ns = f"tls://127.0.0.1:{port}"
    service = procs.start(
        "-m", "namewire", "nameservice", "--listen", ns, "--log-level", "WARNING",
        "--tls-cert", str(certs / "nameservice.pem"), "--tls-key", str(certs / "nameservice-key.pem"),
        "--tls-ca", str(certs / "ca.pem"), "--secret-file", secret,
    )
    wait_port(port, service)
    # The service takes everything from the environment.
    procs.start(
        "-m", "namewire", "run", str(APPS / "worker.py"), "--name", "Worker", "--nameservice", ns,
        "--listen", "tls://127.0.0.1:0", "--no-unix", "--log-level", "WARNING",
        env={"NAMEWIRE_TLS_CERT": str(certs / "Worker.pem"),
             "NAMEWIRE_TLS_KEY": str(certs / "Worker-key.pem"),
             "NAMEWIRE_TLS_CA": str(certs / "ca.pem"), "NAMEWIRE_SECRET_FILE": secret},
    )
    options = ["--nameservice", ns, "--tls-cert", str(certs / "cli.pem"),
               "--tls-key", str(certs / "cli-key.pem"), "--tls-ca", str(certs / "ca.pem"),
               "--secret-file", secret]
    deadline = time.monotonic() + 15
    while True:
        listed = namewire("ls", "--json", *options)
        if listed.returncode == 0 and any(r["name"] == "Worker" for r in json.loads(listed.stdout)):
            break
        assert time.monotonic() < deadline, listed.stdout + listed.stderr
        time.sleep(0.2)
    [row] = [r for r in json.loads(listed.stdout) if r["name"] == "Worker"]
    assert row["identity"] == "Worker" and row["addresses"][0].startswith("tls://")
    called = namewire("call", "Worker", "plus", "1", "2", *options)
    assert called.returncode == 0, called.stderr
    assert called.stdout.strip() == "3"

    (tmp_path / "wrong").write_text("not the secret of this cluster at all\n")
    (tmp_path / "wrong").chmod(0o600)
    wrong = namewire("call", "Worker", "plus", "1", "2", *options[:-1], str(tmp_path / "wrong"))
    assert wrong.returncode == 1 and "AuthError" in wrong.stderr
    assert "wrong shared secret" in wrong.stderr

    (tmp_path / "open").write_text("a secret anyone on this host can read\n")
    (tmp_path / "open").chmod(0o644)
    exposed = namewire("call", "Worker", "plus", "1", "2", *options[:-1], str(tmp_path / "open"))
    assert exposed.returncode == 2 and "chmod 600" in exposed.stderr

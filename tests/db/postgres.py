"""A throw-away PostgreSQL server: ``initdb`` in a temporary directory, reached by a unix socket there.

Used by the tests (tests/db/conftest.py) and by bench/db_bench.py. As root it runs as ``nobody``
(PostgreSQL refuses to run as root); otherwise as the current user. No TCP port is opened
(``listen_addresses=''``), so parallel runs cannot collide. `stop` shuts it down (fast mode) and
removes the directory.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

USER = "namewire"  # the database superuser initdb creates (trust auth, socket only)
PORT = 5432  # only names the socket file (.s.PGSQL.5432) inside our own directory


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot be started here; the message says why and how to fix it."""


def find_bindir() -> Path | None:
    """Debian's /usr/lib/postgresql/<version>/bin (newest version), else initdb on PATH."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresServer:
    """Start with `start` (or ``with``); ``dsn`` is a libpq connection string; `stop` cleans up."""

    def __init__(self) -> None:
        self.dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.user: str | None = None

    @property
    def dsn(self) -> str:
        return f"host={self.dir} port={PORT} user={USER} dbname=postgres"

    @property
    def socket_dir(self) -> str:
        return str(self.dir)

    def start(self, timeout: float = 30.0) -> PostgresServer:
        bindir = find_bindir()
        if bindir is None:
            raise PostgresUnavailable(
                "PostgreSQL is not installed (no initdb under /usr/lib/postgresql/*/bin or on "
                "PATH): apt-get install postgresql (listed in .ci/apt-packages)"
            )
        run_as: dict[str, int] = {}
        if os.geteuid() == 0:
            try:
                nobody = pwd.getpwnam("nobody")
            except KeyError:
                raise PostgresUnavailable("running as root and no user 'nobody' to run it as")
            run_as = {"user": nobody.pw_uid, "group": nobody.pw_gid}
        # /tmp, not a per-user temporary directory that nobody could not enter.
        self.dir = Path(tempfile.mkdtemp(prefix="namewire-pg-", dir="/tmp" if run_as else None))
        if run_as:
            os.chown(self.dir, run_as["user"], run_as["group"])
        data = self.dir / "data"
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "HOME": str(self.dir)}
        initdb = subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-U", USER, "--auth=trust",
             "--encoding=UTF8", "--no-locale", "--no-sync"],
            capture_output=True, text=True, timeout=timeout, env=env, check=False, **run_as,  # type: ignore[arg-type]
        )
        if initdb.returncode != 0:
            self.stop()
            raise PostgresUnavailable(f"initdb failed: {initdb.stderr.strip()[-500:]}")
        log = open(self.dir / "postgres.log", "wb")  # noqa: SIM115 - closed when the server stops
        self.proc = subprocess.Popen(
            [str(bindir / "postgres"), "-D", str(data), "-k", str(self.dir), "-p", str(PORT),
             "-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=50"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            **run_as,  # type: ignore[arg-type]
        )
        log.close()
        self._wait_ready(bindir, env, run_as, timeout)
        return self

    def _wait_ready(
        self, bindir: Path, env: dict[str, str], run_as: dict[str, int], timeout: float
    ) -> None:
        assert self.proc is not None and self.dir is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                text = (self.dir / "postgres.log").read_text(errors="replace")[-800:]
                self.stop()
                raise PostgresUnavailable(f"postgres exited with {self.proc.returncode}: {text}")
            ready = subprocess.run(
                [str(bindir / "pg_isready"), "-q", "-h", str(self.dir), "-p", str(PORT),
                 "-U", USER, "-d", "postgres"],
                env=env, check=False,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.05)
        self.stop()
        raise PostgresUnavailable(f"postgres was not ready within {timeout}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown: roll back, close, exit
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

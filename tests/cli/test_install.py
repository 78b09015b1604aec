"""``pip install`` of namewire's wheel into a fresh virtual environment, outside the checkout.

The environment has no access to the checkout or to the test runner's site-packages (no
``--system-site-packages``): a dependency missing from pyproject.toml, or a demo program that
is not shipped inside the package, fails here. The wheel is built from a copy of the source
(a stale ``build/`` in the checkout cannot leak into it); dependencies come from the package
index through pip's cache. About 20 s, most of it building the wheel and the virtual environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(os.environ.get("NAMEWIRE_NATIVE") == "0",
                       reason="the install does not depend on the socket implementation: it runs "
                              "once, in the C reactor pass of `make test`"),
]

_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "*.egg-info", "__pycache__", "*.so", "*.pyc", ".pytest_cache",
    ".mypy_cache", ".ruff_cache", ".hypothesis", "results",
)
_OFFLINE = ("NewConnectionError", "Network is unreachable", "Temporary failure in name resolution",
            "No matching distribution found")


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 120,
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)


def test_the_wheel_installs_outside_the_checkout_and_the_demo_runs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "NAMEWIRE_NAMESERVICE", "PYTHONHOME")}
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCE)
    wheels = tmp_path / "wheels"
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(source),
                 "-w", str(wheels)], tmp_path, env)
    assert built.returncode == 0, built.stderr
    [wheel] = wheels.glob("namewire-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(archive.read(n).decode() for n in archive.namelist()
                        if n.endswith(".dist-info/METADATA"))
        names = archive.namelist()
    assert "License-Expression: MIT" in metadata and "Project-URL: " in metadata
    assert "](bench/" not in metadata and "pip install namewire" in metadata  # renders on an index
    assert "namewire/_examples/plus_server.py" in names

    venv = tmp_path / "venv"
    made = run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    # The runner's pip installs into the new environment (--python): no ensurepip, same cache.
    installed = run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                     str(wheel)], tmp_path, env, timeout=180)
    if installed.returncode != 0 and any(s in installed.stderr for s in _OFFLINE):
        pytest.skip(f"no package index reachable for uvloop/msgpack: {installed.stderr[-300:]}")
    assert installed.returncode == 0, installed.stderr

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    namewire = str(venv / "bin" / "namewire")
    where = run([str(python), "-c", "import namewire; print(namewire.__file__)"], elsewhere, env)
    assert str(venv) in where.stdout, where.stdout + where.stderr

    demo = run([namewire, "demo", "--callers", "20", "--seconds", "1"], elsewhere, env, 90)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "calls/s" in demo.stdout and "demo: stopped (ok)" in demo.stdout
    assert "one call = a full rpc_call('PlusServer', 'plus', 1, 2) by name" in demo.stdout

    version = run([namewire, "--version"], elsewhere, env)
    assert version.returncode == 0 and "sockets:" in version.stdout

    bench = run([namewire, "bench"], elsewhere, env)
    assert bench.returncode == 1
    assert "the benchmark suite runs from a namewire checkout" in bench.stderr
    bench_help = run([namewire, "bench", "--help"], elsewhere, env)
    assert bench_help.returncode == 0 and "usage: namewire bench" in bench_help.stdout


def test_a_failed_c_build_warns_in_the_build_output_and_still_installs(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NAMEWIRE_REQUIRE_NATIVE"}
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCE)
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", str(source),
                 "-w", str(tmp_path / "wheels")], tmp_path, {**env, "CC": "/bin/false"})
    assert built.returncode == 0, built.stderr
    assert "namewire: WARNING: the C reactor (namewire/transport/_native.c) was NOT built" in (
        built.stdout + built.stderr)
    [wheel] = (tmp_path / "wheels").glob("namewire-*.whl")
    assert not any(n.endswith(".so") for n in zipfile.ZipFile(wheel).namelist())

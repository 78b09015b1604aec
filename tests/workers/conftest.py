"""Fixtures for the worker tests: a registry URL (the built-in name service, or any backend)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.conftest import Processes


@pytest.fixture
def registry_url(procs: Processes) -> Iterator[str]:
    """The URL of a registry the test may use. ``NAMEWIRE_TEST_REGISTRY`` (``etcd://...``, or the
    ``tcp://`` of a name service started elsewhere) runs the same tests against another backend;
    by default a built-in name service is started for the test and stopped after it."""
    given = os.environ.get("NAMEWIRE_TEST_REGISTRY")
    if given:
        yield given
        return
    url, _ = procs.nameservice()
    yield url


def process_alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False

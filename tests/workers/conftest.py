"""Fixtures for the worker tests: a registry URL (the built-in name service, or any backend)."""

from __future__ import annotations

import itertools
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


_prefixes = itertools.count()


@pytest.fixture(params=["nameservice", "etcd"])
def each_registry_url(request: pytest.FixtureRequest, procs: Processes) -> Iterator[str]:
    """A registry of each kind in turn: a built-in name service started for the test, then a key
    prefix of its own on the run's etcd (groups are a registry feature, held by every backend).
    ``NAMEWIRE_TEST_REGISTRY`` replaces both, as for `registry_url`."""
    given = os.environ.get("NAMEWIRE_TEST_REGISTRY")
    if given:
        if request.param == "etcd":
            pytest.skip("NAMEWIRE_TEST_REGISTRY names the registry: run once, on it")
        yield given
    elif request.param == "nameservice":
        yield procs.nameservice()[0]
    else:
        yield f"{request.getfixturevalue('etcd_server').url}/groups{next(_prefixes)}"


def process_alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False

"""The in-process node tests run on uvloop, the loop `namewire run` uses, with node sessions on
the C reactor; `make test`'s second pass (NAMEWIRE_NATIVE=0) runs them again on the stock asyncio
loop and asyncio transports, what a machine without uvloop or the extension gets."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping

import pytest
import uvloop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    if os.environ.get("NAMEWIRE_NATIVE") == "0":
        return {"asyncio": asyncio.new_event_loop}
    return {"uvloop": uvloop.new_event_loop}

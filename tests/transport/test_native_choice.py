"""When stream sockets run on the C reactor: the NAMEWIRE_NATIVE switch and the loop's abilities."""

from __future__ import annotations

import asyncio
import asyncio.proactor_events

import pytest

from namewire.transport import _native_stream


def test_selector_loops_and_uvloop_carry_the_reactor() -> None:
    import uvloop

    for make in (asyncio.new_event_loop, uvloop.new_event_loop):
        loop = make()
        try:
            assert _native_stream.loop_carries_reactor(loop)
        finally:
            loop.close()


def test_a_proactor_loop_cannot_carry_the_reactor() -> None:
    class Proactor(asyncio.proactor_events.BaseProactorEventLoop):
        # Windows' default loop, without the Windows proactor behind it (none on this system).
        def __init__(self) -> None:
            pass

        def __del__(self) -> None:
            pass

    assert not _native_stream.loop_carries_reactor(Proactor())  # type: ignore[abstract]


async def test_a_loop_without_add_reader_falls_back_unless_the_reactor_is_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if _native_stream._native is None:
        pytest.skip("the C reactor is not built here")
    monkeypatch.setattr(_native_stream, "loop_carries_reactor", lambda loop: False)
    monkeypatch.delenv("NAMEWIRE_NATIVE", raising=False)
    assert not _native_stream.available()
    monkeypatch.setenv("NAMEWIRE_NATIVE", "1")
    with pytest.raises(RuntimeError, match="NAMEWIRE_NATIVE=1 but the C reactor cannot be used"):
        _native_stream.available()


def test_required_reactor_that_is_not_built_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_native_stream, "_native", None)
    monkeypatch.setenv("NAMEWIRE_NATIVE", "1")
    with pytest.raises(RuntimeError, match="not built"):
        _native_stream.available()
    monkeypatch.setenv("NAMEWIRE_NATIVE", "auto")
    assert not _native_stream.available()


async def test_off_switch_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NAMEWIRE_NATIVE", "0")
    assert not _native_stream.available()

"""Asynchronous logging: context fields, rotation, JSON lines, no loss on close, drop_oldest."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from namewire.runtime import (
    LogPipeline,
    configure_logging,
    reset_node_name,
    set_node_name,
    spawn,
)

log = logging.getLogger("tests.runtime")


@pytest.fixture
def pipelines() -> Iterator[list[LogPipeline]]:
    """Pipelines a test opened; closed afterwards even if the test fails."""
    opened: list[LogPipeline] = []
    yield opened
    for pipeline in opened:
        pipeline.close()


def _json_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def test_records_carry_node_and_process_name(
    tmp_path: Path, pipelines: list[LogPipeline]
) -> None:
    path = tmp_path / "node.jsonl"
    pipelines.append(configure_logging("DEBUG", path, "json"))
    token = set_node_name("PlusServer")
    try:

        async def worker() -> None:
            log.info("from the worker")

        await spawn(worker, name="worker-7")
        log.warning("from the test body")
    finally:
        reset_node_name(token)
    log.info("outside the node")
    pipelines[0].close()
    records = {r["message"]: r for r in _json_lines(path)}
    assert records["from the worker"]["node"] == "PlusServer"
    assert records["from the worker"]["process"] == "worker-7"
    assert records["from the test body"]["node"] == "PlusServer"
    assert records["from the test body"]["process"] == "-"
    assert records["outside the node"]["node"] == "-"
    assert records["from the worker"]["level"] == "INFO"
    assert records["from the worker"]["logger"] == "tests.runtime"


def test_text_format_and_level(tmp_path: Path, pipelines: list[LogPipeline]) -> None:
    path = tmp_path / "plain.log"
    pipelines.append(configure_logging("warning", path))
    token = set_node_name("Chat")
    log.info("too low to appear")
    log.warning("hello %s", "world")
    reset_node_name(token)
    pipelines[0].close()
    lines = path.read_text().splitlines()
    assert len(lines) == 1
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING \[Chat\] tests\.runtime: hello world",
        lines[0],
    )
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("LOUD")


def test_json_lines_parse_and_carry_tracebacks(
    tmp_path: Path, pipelines: list[LogPipeline]
) -> None:
    path = tmp_path / "app.jsonl"
    pipelines.append(configure_logging(logging.INFO, path, "json"))
    try:
        raise KeyError("missing")
    except KeyError:
        log.exception("lookup failed for %r", "key", extra={"request_id": 12})
    log.info("unicode: é ✓ \n second line")
    pipelines[0].close()
    first, second = _json_lines(path)
    assert first["message"] == "lookup failed for 'key'"
    assert first["level"] == "ERROR"
    assert "KeyError: 'missing'" in str(first["exc"])
    assert first["request_id"] == 12
    assert str(first["ts"]).endswith("+00:00")
    assert second["message"] == "unicode: é ✓ \n second line"


def test_rotation_by_size(tmp_path: Path, pipelines: list[LogPipeline]) -> None:
    path = tmp_path / "rot.log"
    pipelines.append(configure_logging("INFO", path, rotate_bytes=2_000, backup_count=3))
    for i in range(500):
        log.info("record %04d with some padding to fill the file", i)
    pipelines[0].close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["rot.log", "rot.log.1", "rot.log.2", "rot.log.3"]
    for name in names:
        assert (tmp_path / name).stat().st_size <= 2_000
    # The newest records survive, in order, across the rotated files (oldest backup first).
    kept = []
    for name in ["rot.log.3", "rot.log.2", "rot.log.1", "rot.log"]:
        kept += [int(m) for m in re.findall(r"record (\d{4})", (tmp_path / name).read_text())]
    assert kept == list(range(500 - len(kept), 500))


def test_rotation_by_time(tmp_path: Path, pipelines: list[LogPipeline]) -> None:
    path = tmp_path / "timed.log"
    pipelines.append(configure_logging("INFO", path, rotate_when="S"))
    log.info("before")
    time.sleep(1.1)
    log.info("after")
    pipelines[0].close()
    assert "before" in (tmp_path / "timed.log.1").read_text()
    assert "after" in path.read_text() and "before" not in path.read_text()


def test_no_record_lost_on_close(tmp_path: Path, pipelines: list[LogPipeline]) -> None:
    path = tmp_path / "all.log"
    pipeline = configure_logging("INFO", path, queue_size=100, overflow="block")
    pipelines.append(pipeline)
    for i in range(10_000):
        log.info("n=%d", i)
    pipeline.close()
    numbers = [int(line.rsplit("n=", 1)[1]) for line in path.read_text().splitlines()]
    assert numbers == list(range(10_000))
    assert pipeline.dropped == 0


def test_drop_oldest_counts_and_reports(tmp_path: Path, pipelines: list[LogPipeline]) -> None:
    path = tmp_path / "drops.log"
    pipeline = configure_logging("INFO", path, queue_size=4, overflow="drop_oldest")
    pipelines.append(pipeline)
    for i in range(20_000):
        log.info("n=%d", i)
    pipeline.close()
    assert pipeline.dropped > 0
    lines = path.read_text().splitlines()
    reports = [re.search(r"dropped (\d+) log records \(queue full at 4\)", x) for x in lines]
    reported = sum(int(m.group(1)) for m in reports if m)
    kept = [int(x.rsplit("n=", 1)[1]) for x in lines if "n=" in x]
    assert reported == pipeline.dropped
    assert len(kept) + pipeline.dropped == 20_000
    assert kept == sorted(kept) and kept[-1] == 19_999  # the newest survive, in order


def test_flush_and_reconfigure(tmp_path: Path, pipelines: list[LogPipeline]) -> None:
    first_path, second_path = tmp_path / "one.log", tmp_path / "two.log"
    first = configure_logging("INFO", first_path)
    pipelines.append(first)
    log.info("to the first")
    assert first.flush(timeout=5)
    assert "to the first" in first_path.read_text()
    second = configure_logging("INFO", second_path, "json")
    pipelines.append(second)
    log.info("to the second")
    second.close()
    assert "to the second" not in first_path.read_text()
    assert _json_lines(second_path)[0]["message"] == "to the second"
    root = logging.getLogger()
    assert not any(type(h).__name__ == "_QueueHandler" for h in root.handlers)


def test_queue_is_flushed_at_interpreter_exit(tmp_path: Path) -> None:
    path = tmp_path / "exit.log"
    code = textwrap.dedent(
        f"""
        import logging
        from namewire.runtime import configure_logging
        configure_logging("INFO", {str(path)!r}, queue_size=50)
        for i in range(5000):
            logging.getLogger("x").info("n=%d", i)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert len(path.read_text().splitlines()) == 5000

"""Asynchronous logging: log calls only queue the record; a writer thread formats and writes it.

The calling thread (usually the event loop) does the cheap part: it stamps the record with the node and
light-process names (`ContextFilter`), renders the message and any traceback to text (so nothing
mutable crosses threads), and appends it to a bounded queue. The writer thread takes records in
batches and hands them to the outputs: console, a file rotated by size and/or time, text or JSON lines.

The queue holds at most ``queue_size`` records. When it is full, ``overflow`` decides:

``"block"`` (default)
    The logging call waits until the writer has made room. Nothing is lost, but on the event loop
    thread this stalls the loop for as long as the disk is behind.
``"drop_oldest"``
    The oldest queued record is discarded, so the logging call never waits. Drops are counted
    (`LogPipeline.dropped`) and reported in the log itself by a WARNING record
    ``"dropped N log records (queue full at Q)"`` once the queue drains, at least every second
    under sustained pressure, and on close.

`LogPipeline.close` (also run at interpreter exit) writes every queued record before returning.
"""

from __future__ import annotations

import atexit
import datetime
import json
import logging
import logging.handlers
import os
import sys
import threading
import time
from collections import deque
from typing import Any, Literal

from ._context import NO_NAME, current_node_name, current_process_name
from ._rotation import SizeAndTimeRotatingFileHandler

__all__ = [
    "TEXT_FORMAT",
    "ContextFilter",
    "JsonFormatter",
    "LogPipeline",
    "TextFormatter",
    "configure_logging",
]

Overflow = Literal["block", "drop_oldest"]
LogFormat = Literal["text", "json"]

# [node] outside a light process, [node/process] inside one.
TEXT_FORMAT = "%(asctime)s %(levelname)-7s [%(context)s] %(name)s: %(message)s"
_BATCH = 256  # records the writer takes per turn; room in a full queue appears at this grain
_PAUSE = 0.0001  # seconds the writer sleeps between batches while a backlog remains
_REPORT_EVERY = 1.0  # seconds between drop reports while the queue stays full


class ContextFilter(logging.Filter):
    """Adds ``record.node`` and ``record.process_name`` from the caller's context, and
    ``record.context``: ``node/process`` in a light process, else ``node``; never rejects.

    Attach it to any handler of your own to get the same fields namewire's pipeline adds.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "node"):
            record.node = current_node_name()
            record.process_name = current_process_name()
        if not hasattr(record, "context"):  # also when extra= gave the node
            node = getattr(record, "node", NO_NAME)
            process = getattr(record, "process_name", NO_NAME)
            record.context = node if process == NO_NAME else f"{node}/{process}"
        return True


class TextFormatter(logging.Formatter):
    """`TEXT_FORMAT` lines; the date part is rendered once per second instead of once per record."""

    def __init__(self, fmt: str = TEXT_FORMAT) -> None:
        super().__init__(fmt)
        self._second = -1
        self._second_text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._second_text = time.strftime("%Y-%m-%d %H:%M:%S", self.converter(record.created))
        return f"{self._second_text},{int(record.msecs):03d}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC, ISO 8601), level, logger, node, process, message, and
    ``exc`` / ``stack`` when present. Fields given with ``extra=`` are added under their own names
    (values JSON cannot encode as their ``str()``)."""

    _STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
        "message",
        "asctime",
        "node",
        "process_name",
        "context",
    }

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "node": getattr(record, "node", "-"),
            "process": getattr(record, "process_name", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        for key, value in vars(record).items():
            if key not in self._STANDARD and key not in out:
                out[key] = value
        return json.dumps(out, ensure_ascii=False, default=str)


class _Flush:
    """A marker in the queue: the writer sets it once everything queued before it is written."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = threading.Event()


class _Stop(_Flush):
    __slots__ = ()


class _RecordQueue:
    """A bounded deque with a condition variable; markers bypass the bound and are never dropped."""

    def __init__(self, maxsize: int, overflow: Overflow) -> None:
        self.maxsize = maxsize
        self.drop = overflow == "drop_oldest"
        self.dropped = 0  # only grows; read without the lock by the writer
        self.closed = False
        self._items: deque[logging.LogRecord | _Flush] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)

    def put(self, record: logging.LogRecord) -> None:
        with self._lock:
            items = self._items
            while len(items) >= self.maxsize and not self.closed:
                if self.drop:
                    self._drop_oldest()
                else:
                    self._not_full.wait()
            if self.closed:
                return  # logged by another thread while the pipeline closed: nobody will write it
            items.append(record)
            self._not_empty.notify()

    def _drop_oldest(self) -> None:
        items = self._items
        for i, item in enumerate(items):
            if not isinstance(item, _Flush):
                del items[i]
                self.dropped += 1
                return
        items.popleft()  # only markers: cannot happen while markers bypass the bound; stay safe

    def close(self) -> None:
        """Refuse further records and release every thread waiting for room."""
        with self._lock:
            self.closed = True
            self._not_full.notify_all()

    def empty(self) -> bool:
        return not self._items

    def put_marker(self, marker: _Flush) -> None:
        with self._lock:
            self._items.append(marker)
            self._not_empty.notify()

    def take(self, limit: int) -> list[logging.LogRecord | _Flush]:
        """Up to ``limit`` items, oldest first, waiting while there are none."""
        with self._lock:
            items = self._items
            while not items:
                self._not_empty.wait()
            if len(items) <= limit:
                batch = list(items)
                items.clear()
            else:
                batch = [items.popleft() for _ in range(limit)]
            self._not_full.notify_all()
            return batch


class _QueueHandler(logging.Handler):
    """Runs on the logging thread: render the record to plain data and queue it."""

    def __init__(self, queue: _RecordQueue) -> None:
        super().__init__()
        self.queue = queue
        self.addFilter(ContextFilter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put(self.prepare(record))
        except Exception:  # noqa: BLE001 (logging's contract: report via handleError, never raise)
            self.handleError(record)

    def handle(self, record: logging.LogRecord) -> bool:
        # No handler lock: the queue has its own, and holding both while blocked on a full queue
        # would serialise every logging thread behind the slowest.
        rv = self.filter(record)
        if rv:
            self.emit(record)
        return bool(rv)

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # A shallow copy (other handlers may still see the original), cheaper than copy.copy.
        original = record
        record = logging.LogRecord.__new__(logging.LogRecord)
        record.__dict__.update(original.__dict__)
        record.message = record.getMessage()
        record.msg = record.message
        record.args = None
        if record.exc_info:
            record.exc_text = _TRACEBACK_FORMATTER.formatException(record.exc_info)
        record.exc_info = None
        return record


_TRACEBACK_FORMATTER = logging.Formatter()


class LogPipeline:
    """The running asynchronous logging set-up returned by `configure_logging`.

    ``handlers`` are the outputs the writer thread feeds; ``dropped`` counts records discarded under
    ``overflow="drop_oldest"``. `flush` waits until everything queued so far is written; `close`
    flushes, stops the writer thread and closes the outputs (idempotent).
    """

    def __init__(
        self,
        handlers: list[logging.Handler],
        *,
        level: int,
        queue_size: int,
        overflow: Overflow,
        logger: logging.Logger,
    ) -> None:
        self.handlers = handlers
        self.queue_size = queue_size
        self.overflow: Overflow = overflow
        self._queue = _RecordQueue(queue_size, overflow)
        self._handler = _QueueHandler(self._queue)
        self._logger = logger
        self._reported = 0
        self._closed = False
        self._close_lock = threading.Lock()
        self._thread = threading.Thread(target=self._write, name="namewire-log-writer", daemon=True)
        self._thread.start()
        self._previous_level = logger.level
        logger.addHandler(self._handler)
        logger.setLevel(level)

    @property
    def dropped(self) -> int:
        """Records discarded so far because the queue was full (``drop_oldest`` only)."""
        return self._queue.dropped

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every record queued before the call is written and the outputs flushed.

        Returns False if ``timeout`` seconds passed first. Blocks the calling thread: from a coroutine,
        run it with ``await asyncio.to_thread(pipeline.flush)``.
        """
        if self._closed:
            return True
        marker = _Flush()
        self._queue.put_marker(marker)
        return marker.done.wait(timeout)

    def close(self) -> None:
        """Detach from logging (restoring the root level), write every queued record, stop the writer
        thread and close the outputs. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._logger.removeHandler(self._handler)
        self._logger.setLevel(self._previous_level)
        stop = _Stop()
        self._queue.put_marker(stop)
        self._thread.join()
        self._queue.close()
        for handler in self.handlers:
            handler.close()
        self._handler.close()

    def _write(self) -> None:
        last_report = time.monotonic()
        while True:
            batch = self._queue.take(_BATCH)
            for item in batch:
                if isinstance(item, _Flush):
                    self._report_drops()
                    for handler in self.handlers:
                        handler.flush()
                    item.done.set()
                    if isinstance(item, _Stop):
                        return
                else:
                    self._dispatch(item)
            for handler in self.handlers:
                handler.flush()
            if _PAUSE and not self._queue.empty():
                # A backlog keeps this thread busy; without a pause the loop thread would wait up
                # to the interpreter's switch interval (5 ms) for the GIL at each wake-up.
                time.sleep(_PAUSE)
            now = time.monotonic()
            if self._queue.dropped != self._reported and (
                self._queue.empty() or now - last_report >= _REPORT_EVERY
            ):
                self._report_drops()
                last_report = now

    def _dispatch(self, record: logging.LogRecord) -> None:
        for handler in self.handlers:
            if record.levelno >= handler.level:
                handler.handle(record)

    def _report_drops(self) -> None:
        dropped = self._queue.dropped
        count = dropped - self._reported
        if count <= 0:
            return
        self._reported = dropped
        record = logging.LogRecord(
            "namewire.runtime",
            logging.WARNING,
            __file__,
            0,
            "dropped %d log records (queue full at %d)",
            (count, self.queue_size),
            None,
        )
        ContextFilter().filter(record)
        self._dispatch(record)


_active: LogPipeline | None = None
_active_lock = threading.Lock()


def configure_logging(
    level: int | str = "INFO",
    file: str | os.PathLike[str] | None = None,
    format: LogFormat = "text",
    *,
    console: bool | None = None,
    rotate_bytes: int = 0,
    rotate_when: str | None = None,
    backup_count: int = 5,
    queue_size: int = 10_000,
    overflow: Overflow = "block",
) -> LogPipeline:
    """Send the root logger's records through a bounded queue to a writer thread; return the pipeline.

    ``level``: a level name or number for the root logger. ``file``: a path to append to; rotated when
    it would pass ``rotate_bytes`` (0: never) and/or when ``rotate_when`` comes round ("S", "M", "H",
    "D": every second/minute/hour/day from now; "midnight": each local midnight). Rotated files are
    ``file.1`` (newest) to ``file.<backup_count>``. ``format``: "text" (human readable) or "json" (one
    object per line) for every output. ``console``: also write to stderr; default: only when there is
    no file. ``queue_size`` / ``overflow``: the bound and what a full queue does (module doc).

    Calling it again closes (and flushes) the previous pipeline and installs the new one. Handlers
    added to the root logger by others are left alone. Raises ValueError for a bad argument.
    """
    global _active
    if isinstance(level, str):
        numeric = logging.getLevelName(level.upper())
        if not isinstance(numeric, int):
            raise ValueError(f"unknown log level {level!r}")  # noqa: TRY004 (a bad value)
        level = numeric
    if format not in ("text", "json"):
        raise ValueError(f"log format must be 'text' or 'json', not {format!r}")
    if overflow not in ("block", "drop_oldest"):
        raise ValueError(f"overflow must be 'block' or 'drop_oldest', not {overflow!r}")
    if queue_size < 1:
        raise ValueError(f"queue_size must be >= 1, not {queue_size}")
    formatter: logging.Formatter = JsonFormatter() if format == "json" else TextFormatter()
    handlers: list[logging.Handler] = []
    if file is not None:
        handlers.append(
            SizeAndTimeRotatingFileHandler(
                file,
                max_bytes=rotate_bytes,
                when=rotate_when,
                backup_count=backup_count,
                autoflush=False,
            )
        )
    if console or (console is None and file is None):
        handlers.append(logging.StreamHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(formatter)
    with _active_lock:
        if _active is not None:
            _active.close()
        _active = LogPipeline(
            handlers,
            level=level,
            queue_size=queue_size,
            overflow=overflow,
            logger=logging.getLogger(),
        )
        return _active


def _close_active() -> None:
    with _active_lock:
        if _active is not None:
            _active.close()


# Registered after `logging`'s own exit hook, so it runs first (atexit is last in, first out).
atexit.register(_close_active)

"""A log file handler that rotates on size, on time, or on whichever comes first.

The stdlib has one handler per trigger, and its timed handler names backups by date, which collides
when a size rollover happens twice in one period. Here both triggers share one numbered scheme:
``app.log.1`` is the newest backup, ``app.log.<backup_count>`` the oldest. It also tracks the file size
itself instead of formatting each record twice and seeking, as the stdlib size handler does.
"""

from __future__ import annotations

import datetime
import logging
import os
import time

__all__ = ["SizeAndTimeRotatingFileHandler"]

_PERIODS = {"S": 1, "M": 60, "H": 3600, "D": 86400}


class SizeAndTimeRotatingFileHandler(logging.FileHandler):
    """Append to ``filename``; roll over before a record would take the file past ``max_bytes``
    (0: no size limit) and when the ``when`` period comes round.

    ``when`` is None (no time limit), "S", "M", "H" or "D" (every second, minute, hour or day from
    now, times ``interval``), or "midnight" (each local midnight). Keeps ``backup_count`` backups.
    Sizes count characters, which is bytes for ASCII text. With ``autoflush`` False the stream is
    flushed only by `flush` (the log writer thread does that once per batch).
    Raises ValueError for an unknown ``when``, or for rotation without backups.
    """

    def __init__(
        self,
        filename: str | os.PathLike[str],
        *,
        max_bytes: int = 0,
        when: str | None = None,
        interval: int = 1,
        backup_count: int = 5,
        encoding: str = "utf-8",
        autoflush: bool = True,
    ) -> None:
        if when is not None:
            when = "midnight" if when.lower() == "midnight" else when.upper()
            if when != "midnight" and when not in _PERIODS:
                raise ValueError(f"rotate_when must be one of S, M, H, D, midnight; not {when!r}")
        if (max_bytes > 0 or when is not None) and backup_count < 1:
            raise ValueError("log rotation needs backup_count >= 1")
        if interval < 1:
            raise ValueError(f"rotation interval must be >= 1, not {interval}")
        super().__init__(os.fspath(filename), mode="a", encoding=encoding)
        self.max_bytes = max_bytes
        self.when = when
        self.interval = interval
        self.backup_count = backup_count
        self.autoflush = autoflush
        self.rollover_at = self._next_rollover(time.time()) if when is not None else None
        self._size = self._current_size()

    def _current_size(self) -> int:
        try:
            return os.path.getsize(self.baseFilename)
        except OSError:
            return 0

    def _next_rollover(self, now: float) -> float:
        if self.when == "midnight":
            today = datetime.datetime.fromtimestamp(now).date()
            midnight = datetime.datetime.combine(
                today + datetime.timedelta(days=1), datetime.time()
            )
            return midnight.timestamp()
        assert self.when is not None
        return now + _PERIODS[self.when] * self.interval

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
            due_by_time = self.rollover_at is not None and record.created >= self.rollover_at
            due_by_size = 0 < self.max_bytes < self._size + len(line) and self._size > 0
            if due_by_time or due_by_size:
                self.do_rollover()
            if self.stream is None:
                self.stream = self._open()
            self.stream.write(line)
            self._size += len(line)
            if self.autoflush:
                self.stream.flush()
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 (logging's contract: report via handleError, never raise)
            self.handleError(record)

    def do_rollover(self) -> None:
        """Close the file, shift ``file.N`` to ``file.N+1`` (dropping the oldest), ``file`` to
        ``file.1``, and start an empty file."""
        if self.stream is not None:
            self.stream.close()
            self.stream = None
        base = self.baseFilename
        for i in range(self.backup_count - 1, 0, -1):
            source, target = f"{base}.{i}", f"{base}.{i + 1}"
            if os.path.exists(source):
                os.replace(source, target)
        if os.path.exists(base):
            os.replace(base, f"{base}.1")
        self._size = 0
        if self.rollover_at is not None:
            self.rollover_at = self._next_rollover(time.time())

"""Asynchronous file IO: every blocking call runs on a small dedicated thread pool.

Disk IO cannot be made non-blocking with selectors, so each operation is handed to one of
`MAX_WORKERS` threads of a pool private to this module (separate from the loop's default executor, so
DNS look-ups or user ``to_thread`` calls do not queue behind a large write, and vice versa). The loop
only awaits the result. Operations on one `AsyncFile` run one at a time, in the order they were
awaited, so concurrent writers from several tasks never interleave inside a call.

Cancelling an awaiting task does not stop an operation already running on its thread; the file stays
consistent and the result is discarded.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import os
import threading
from collections.abc import AsyncIterator, Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import IO, Any, AnyStr, Generic, Literal, TypeVar, overload

__all__ = [
    "MAX_WORKERS",
    "AsyncFile",
    "append",
    "listdir",
    "open",
    "read_bytes",
    "read_text",
    "remove",
    "stat",
    "write_bytes",
    "write_text",
]

T = TypeVar("T")
StrPath = str | os.PathLike[str]

MAX_WORKERS = 4
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()

BinaryMode = Literal["rb", "wb", "ab", "xb", "r+b", "w+b", "a+b", "x+b", "rb+", "wb+", "ab+", "xb+"]
TextMode = Literal["r", "w", "a", "x", "r+", "w+", "a+", "x+", "rt", "wt", "at", "xt"]


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(MAX_WORKERS, thread_name_prefix="namewire-fs")
        return _executor


async def _run(fn: Callable[..., T], *args: Any) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool(), functools.partial(fn, *args))


class AsyncFile(Generic[AnyStr]):
    """An open file whose methods are coroutines run on the fs thread pool.

    Wraps the object `builtins.open` returned (``raw``). Use it as an async context manager, or call
    `close`. Iterating with ``async for`` yields lines.
    """

    def __init__(self, raw: IO[AnyStr]) -> None:
        self.raw: IO[AnyStr] = raw
        self._lock = asyncio.Lock()

    @property
    def name(self) -> Any:
        """The path the file was opened with."""
        return self.raw.name

    @property
    def closed(self) -> bool:
        """True once closed."""
        return bool(self.raw.closed)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        async with self._lock:
            return await _run(fn, *args)

    async def read(self, size: int = -1) -> AnyStr:
        """Read up to ``size`` bytes/characters (all to the end if negative); empty at end of file."""
        return await self._call(self.raw.read, size)

    async def readline(self) -> AnyStr:
        """Read one line including its line ending; empty at end of file."""
        return await self._call(self.raw.readline)

    async def write(self, data: AnyStr) -> int:
        """Write ``data``; return how much was written (all of it, for buffered files)."""
        return await self._call(self.raw.write, data)

    async def flush(self) -> None:
        """Push Python's buffer to the operating system (not to the disk: see `fsync`)."""
        await self._call(self.raw.flush)

    async def fsync(self) -> None:
        """Flush and ask the operating system to put the data on the disk."""
        await self._call(_flush_and_sync, self.raw)

    async def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move the file position; return the new absolute position."""
        return await self._call(self.raw.seek, offset, whence)

    async def tell(self) -> int:
        """The current file position."""
        return await self._call(self.raw.tell)

    async def close(self) -> None:
        """Flush and close the file. Idempotent."""
        if not self.raw.closed:
            await self._call(self.raw.close)

    async def __aenter__(self) -> AsyncFile[AnyStr]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __aiter__(self) -> AsyncIterator[AnyStr]:
        return self

    async def __anext__(self) -> AnyStr:
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line


def _flush_and_sync(raw: IO[Any]) -> None:
    raw.flush()
    os.fsync(raw.fileno())


class _Opening(Generic[AnyStr]):
    """What `open` returns: await it for an `AsyncFile`, or use it directly with ``async with``."""

    def __init__(self, opener: Callable[[], IO[AnyStr]]) -> None:
        self._opener: Callable[[], IO[AnyStr]] = opener
        self._file: AsyncFile[AnyStr] | None = None

    async def _open(self) -> AsyncFile[AnyStr]:
        return AsyncFile(await _run(self._opener))

    def __await__(self) -> Generator[Any, None, AsyncFile[AnyStr]]:
        return self._open().__await__()

    async def __aenter__(self) -> AsyncFile[AnyStr]:
        self._file = await self._open()
        return self._file

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._file is not None:
            await self._file.close()


@overload
def open(path: StrPath, mode: BinaryMode, *, buffering: int = -1) -> _Opening[bytes]: ...
@overload
def open(
    path: StrPath,
    mode: TextMode = "r",
    *,
    buffering: int = -1,
    encoding: str | None = "utf-8",
    errors: str | None = None,
    newline: str | None = None,
) -> _Opening[str]: ...
def open(
    path: StrPath,
    mode: str = "r",
    *,
    buffering: int = -1,
    encoding: str | None = "utf-8",
    errors: str | None = None,
    newline: str | None = None,
) -> _Opening[Any]:
    """Open ``path`` like `builtins.open`, on the fs thread pool; text defaults to UTF-8.

    ``await fs.open(p, "rb")`` gives an `AsyncFile`; ``async with fs.open(p, "w") as f`` also closes
    it. Raises what `builtins.open` raises (FileNotFoundError, PermissionError, ValueError for a bad
    mode), when awaited.
    """
    if "b" in mode:
        opener = functools.partial(builtins.open, path, mode, buffering)
    else:
        opener = functools.partial(builtins.open, path, mode, buffering, encoding, errors, newline)
    return _Opening(opener)


def _read(path: StrPath, mode: str, encoding: str | None) -> Any:
    with builtins.open(path, mode, encoding=encoding) as f:
        return f.read()


def _write(path: StrPath, mode: str, data: Any, encoding: str | None) -> int:
    with builtins.open(path, mode, encoding=encoding) as f:
        return f.write(data)


async def read_bytes(path: StrPath) -> bytes:
    """The whole file as bytes. Raises OSError (FileNotFoundError...) as `builtins.open` does."""
    data: bytes = await _run(_read, path, "rb", None)
    return data


async def read_text(path: StrPath, encoding: str = "utf-8") -> str:
    """The whole file decoded as text. Raises OSError, or UnicodeDecodeError for bad bytes."""
    text: str = await _run(_read, path, "r", encoding)
    return text


async def write_bytes(path: StrPath, data: bytes) -> int:
    """Create or truncate ``path`` and write ``data``; return the number of bytes written."""
    return await _run(_write, path, "wb", data, None)


async def write_text(path: StrPath, text: str, encoding: str = "utf-8") -> int:
    """Create or truncate ``path`` and write ``text``; return the number of characters written."""
    return await _run(_write, path, "w", text, encoding)


async def append(path: StrPath, data: bytes | str, encoding: str = "utf-8") -> int:
    """Append ``data`` (bytes, or text encoded with ``encoding``) to ``path``, creating it if needed."""
    if isinstance(data, str):
        return await _run(_write, path, "a", data, encoding)
    return await _run(_write, path, "ab", data, None)


async def stat(path: StrPath, *, follow_symlinks: bool = True) -> os.stat_result:
    """`os.stat` on the fs thread pool."""
    return await _run(functools.partial(os.stat, path, follow_symlinks=follow_symlinks))


async def listdir(path: StrPath = ".") -> list[str]:
    """The entry names in directory ``path`` (arbitrary order, without ``.`` and ``..``)."""
    return await _run(os.listdir, path)


async def remove(path: StrPath) -> None:
    """Delete the file ``path``. Raises FileNotFoundError if it does not exist."""
    await _run(os.remove, path)

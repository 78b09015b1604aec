"""A blocking facade for scripts, notebooks and tests written without async.

    from namewire.sync import Client

    with Client(nameservice="tcp://127.0.0.1:8010") as client:
        print(client.rpc_call("PlusServer", "plus", 1, 2))
        client.send_msg("Logger", {"event": "hi"})
        sender, msg = client.get_msg(timeout=5)

The client runs a `Node` on an event loop in a background thread; every method runs entirely on that
loop's thread (the node is never touched from the caller's) and blocks the calling thread for the
result. Errors are the same `NamewireError`s the async
API raises. Methods may be called from any thread.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Self, TypeVar

from .node import DEFAULT, DEFAULT_CALL_TIMEOUT, Node
from .runtime import new_event_loop
from .transport import Security

__all__ = ["Client"]

T = TypeVar("T")
_counter = itertools.count(1)


class Client:
    """A node driven from blocking code; the constructor starts it, `close` (or ``with``) stops it.

    ``name``: the node's name, which others send and call to; default a unique
    ``sync-HOST-PID-N``. ``nameservice``: the name service URL (default ``$NAMEWIRE_NAMESERVICE``,
    else tcp://127.0.0.1:8010). ``listen``: None (the default) makes a pure caller: it registers
    nothing, so no other service can reach it by name; replies (and messages from the services it
    has connected to) still come back over the connections it opened. Give address URLs (and
    register functions on ``client.node`` first) to be reachable and serve as well.
    ``call_timeout``: the default timeout of `rpc_call` in seconds (None: wait forever).
    ``start_timeout``: how long the constructor waits for the node to start. ``registry_wait``:
    how long to keep trying to reach the name service at start (default 0: a script wants the
    error at once; `Node.start` waits 10 s by default). Raises `RegistryUnavailable` / `NameTaken`
    / `AuthError` from the constructor when the node cannot start.
    ``security`` is the node's (TLS, shared secret; default: from the environment).
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        nameservice: str | None = None,
        listen: str | Sequence[str] | None = None,
        call_timeout: float | None = DEFAULT_CALL_TIMEOUT,
        start_timeout: float = 10.0,
        security: Security | None = None,
        registry_wait: float = 0.0,
    ) -> None:
        self.node = Node(
            name or f"sync-{socket.gethostname()}-{os.getpid()}-{next(_counter)}",
            call_timeout=call_timeout,
            security=security,
        )
        self._loop = new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"namewire.sync({self.node.name})", daemon=True
        )
        self._thread.start()
        self._closed = False
        try:
            self._submit(
                lambda: self.node.start(
                    listen=listen, nameservice=nameservice, registry_wait=registry_wait
                ),
                start_timeout,
            )
        except BaseException:
            self._stop_loop()
            raise

    @property
    def name(self) -> str:
        return self.node.name

    def send_msg(self, name: str, msg: Any) -> None:
        """Send ``msg`` to service ``name``; see `Node.send_msg`."""
        self._submit(lambda: self.node.send_msg(name, msg))

    def rpc_call(
        self, name: str, func: str, *args: Any, timeout: float | None = DEFAULT
    ) -> Any:
        """Call ``func(*args)`` on ``name``; ``timeout`` defaults to ``call_timeout``, None waits
        without limit. Like `Node.rpc_call`, arguments are positional only: the wire carries no
        keyword arguments, and ``timeout`` is the only keyword."""
        return self._submit(lambda: self.node.rpc_call(name, func, *args, timeout=timeout))

    def rpc_call_any(self, func: str, *args: Any, timeout: float | None = DEFAULT) -> Any:
        """Call ``func`` on any live provider; see `Node.rpc_call_any`."""
        return self._submit(lambda: self.node.rpc_call_any(func, *args, timeout=timeout))

    def get_remote_func_provider(self, func: str) -> list[str]:
        """Names of the live services providing ``func``, except this client."""
        return self._submit(lambda: self.node.get_remote_func_provider(func))

    def get_msg(self, timeout: float | None = None) -> tuple[str, Any]:
        """The next message as ``(sender, msg)``; raises TimeoutError after ``timeout`` seconds."""
        return self._submit(self.node.get_msg, timeout)

    def close(self, grace: float = 5.0) -> None:
        """Stop the node (deregistering it) and the background loop. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self._submit(lambda: self.node.stop(grace=grace), grace + 5.0, closing=True)
        finally:
            self._stop_loop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _submit(
        self,
        call: Callable[[], Awaitable[T]],
        timeout: float | None = None,
        *,
        closing: bool = False,
    ) -> T:
        """Run ``call()`` on the loop thread, await what it returns there, and block for the result.

        ``call`` itself runs on the loop too: `Node.rpc_call` and `Node.send_msg` are plain
        functions that read the node's routes before handing back a coroutine.
        """
        if self._closed and not closing:
            raise RuntimeError(f"client {self.node.name!r} is closed")

        async def on_loop() -> T:
            return await call()

        future: Future[T] = asyncio.run_coroutine_threadsafe(on_loop(), self._loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            if future.done():
                raise  # the coroutine's own timeout (CallTimeout), not ours
            future.cancel()
            raise TimeoutError(f"no result within {timeout}s") from None
        except BaseException:
            future.cancel()  # Ctrl-C in the caller: do not leave the coroutine running
            raise

    def _stop_loop(self) -> None:
        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._loop.shutdown_asyncgens()

        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

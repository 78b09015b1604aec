"""`BrowserSession`: one browser's WebSocket, speaking the gateway's JSON protocol (docs/web.md).

Requests (``op`` call, send, providers) each carry an ``id`` and get one answer with it: a
``result`` or an ``error`` with a code from `CODES`. Limits are checked before anything is
decoded or started, in this order: size, rate, then (for work that waits) calls in flight. A
refused request is answered and the connection carries on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from ..errors import (
    CallTimeout,
    EncodeError,
    NameNotFound,
    NamewireError,
    NoSuchFunction,
    RemoteError,
)
from ._policy import BrowserError, RateLimiter

if TYPE_CHECKING:
    from ._gateway import Gateway

__all__ = ["BrowserSession"]

log = logging.getLogger("namewire.gateway")

# The JS client writes the id first, so a refused message that is never decoded (too large) can
# still be answered against the right request.
_LEADING_ID = re.compile(rb'\{\s*"id"\s*:\s*(\d{1,15})\s*[,}]')


def _leading_id(raw: bytes) -> int | None:
    match = _LEADING_ID.match(raw[:40])
    return int(match.group(1)) if match else None


def browser_error(exc: BaseException) -> BrowserError:
    """What the browser is told about a namewire failure."""
    if isinstance(exc, BrowserError):
        return exc
    if isinstance(exc, NameNotFound):
        return BrowserError("no_such_name", str(exc))
    if isinstance(exc, NoSuchFunction):
        return BrowserError("no_such_function", str(exc))
    if isinstance(exc, RemoteError):
        return BrowserError("remote_error", str(exc), remote_type=exc.remote_type,
                            remote_message=exc.remote_message)
    if isinstance(exc, CallTimeout):
        return BrowserError("timeout", str(exc))
    if isinstance(exc, EncodeError):
        return BrowserError("bad_request", str(exc))
    return BrowserError("unavailable", str(exc))


class BrowserSession:
    """A connected browser, known in the cluster as ``name`` (``<gateway>/<n>``)."""

    def __init__(self, gateway: Gateway, ws: ServerConnection, name: str) -> None:
        self.gateway = gateway
        self.ws = ws
        self.name = name
        limits = gateway.policy.limits
        self._limits = limits
        self._rate = RateLimiter(limits.rate, limits.burst)
        self._work: dict[int, asyncio.Task[None]] = {}

    async def run(self) -> None:
        """Answer requests until the browser goes away; its calls in flight are cancelled then."""
        limits = self._limits
        await self.push({"op": "welcome", "name": self.name, "limits": {
            "max_in_flight": limits.max_in_flight, "max_message": limits.max_message,
            "rate": limits.rate, "burst": limits.burst}})
        try:
            async for message in self.ws:
                raw = message.encode() if isinstance(message, str) else message
                try:
                    self._request(raw)
                except BrowserError as exc:
                    log.info("%s: browser %s (%s): %s", self.gateway.name, self.name,
                             self.ws.remote_address[0], exc)
                    await self.push(exc.to_browser(_leading_id(raw)))
        except ConnectionClosed:
            pass
        finally:
            for task in list(self._work.values()):
                task.cancel()

    async def push(self, message: dict[str, Any]) -> None:
        """Send one message to the browser (JSON text); a value JSON cannot carry is an error."""
        try:
            text = json.dumps(message, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            text = json.dumps(BrowserError(
                "remote_error", f"the answer cannot be sent as JSON: {exc}").to_browser(
                message.get("id")))
        await self.ws.send(text)

    # -- requests ----------------------------------------------------------------------------------

    def _request(self, raw: bytes) -> None:
        limits = self._limits
        if len(raw) > limits.max_message:
            raise BrowserError(
                "too_large", f"message of {len(raw)} bytes exceeds limit of "
                f"{limits.max_message} bytes", size=len(raw), limit=limits.max_message)
        if not self._rate.take():
            raise BrowserError(
                "rate_limited", f"more than {limits.rate:g} requests/s (bursts of {limits.burst})",
                rate=limits.rate, burst=limits.burst)
        try:
            request = json.loads(raw)
        except ValueError as exc:
            raise BrowserError("bad_request", f"not JSON: {exc}") from None
        if not isinstance(request, dict) or not isinstance(request.get("id"), int):
            raise BrowserError("bad_request", 'a request is an object with an integer "id"')
        request_id: int = request["id"]
        if request_id in self._work:
            raise BrowserError("bad_request", f"request id {request_id} is already in flight")
        if len(self._work) >= limits.max_in_flight:
            raise BrowserError(
                "too_many_calls", f"{len(self._work)} requests already in flight, the limit per "
                f"connection is {limits.max_in_flight}", limit=limits.max_in_flight)
        op = request.get("op")
        policy = self.gateway.policy
        work: Coroutine[Any, Any, Any]
        if op == "call":
            name, func, args = request.get("name"), request.get("func"), request.get("args", [])
            if not isinstance(name, str) or not isinstance(func, str) or not isinstance(args, list):
                raise BrowserError("bad_request", 'call needs "name", "func" (strings), "args" '
                                                  "(a list)")
            policy.check_call(name, func)
            work = self._call(name, func, args)
        elif op == "send":
            name = request.get("name")
            if not isinstance(name, str) or "msg" not in request:
                raise BrowserError("bad_request", 'send needs "name" (a string) and "msg"')
            policy.check_send(name)
            work = self.gateway.node.send_msg(name, request["msg"])
        elif op == "providers":
            func = request.get("func")
            if not isinstance(func, str):
                raise BrowserError("bad_request", 'providers needs "func" (a string)')
            work = self._providers(func)
        else:
            raise BrowserError("bad_request", f"unknown op {op!r} (call, send or providers)")
        task = asyncio.get_running_loop().create_task(self._answer(request_id, work))
        self._work[request_id] = task

    async def _call(self, name: str, func: str, args: list[Any]) -> Any:
        return await self.gateway.node.rpc_call(name, func, *args,
                                                timeout=self.gateway.call_timeout)

    async def _providers(self, func: str) -> list[str]:
        providers = await self.gateway.node.get_remote_func_provider(func)
        return self.gateway.policy.visible(func, providers)

    async def _answer(self, request_id: int, work: Coroutine[Any, Any, Any]) -> None:
        try:
            try:
                value = await work
            except (NamewireError, BrowserError) as exc:
                error = browser_error(exc)
                log.info("%s: browser %s: request %d: %s", self.gateway.name, self.name,
                         request_id, exc)
                await self.push(error.to_browser(request_id))
            else:
                await self.push({"op": "result", "id": request_id, "value": value})
        except ConnectionClosed:
            pass
        finally:
            self._work.pop(request_id, None)

"""What a browser may do through the gateway: the names and functions exposed, the origins and
tokens accepted, and the per-connection limits; and the error codes a browser is told.

Each refusal is a `BrowserError` with a ``code`` from `CODES`, sent to the browser as
``{"op": "error", "id": ..., "code": ..., "message": ...}``: the browser can branch on the code,
and a person can read the message.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CODES", "Authenticate", "BrowserError", "Exposure", "Limits", "Policy", "RateLimiter"]

# code -> what it means (the table in docs/web.md)
CODES = {
    "bad_request": "the message is not JSON, or not a request the gateway knows",
    "not_exposed": "the gateway does not expose that name or function to browsers",
    "too_many_calls": "this connection already has the most calls in flight it may have",
    "too_large": "the message is over the gateway's size limit",
    "rate_limited": "this connection sends requests faster than the gateway allows",
    "no_such_name": "no live service has that name",
    "no_such_function": "the service does not provide that function",
    "remote_error": "the remote function raised",
    "timeout": "no answer within the gateway's call timeout",
    "unavailable": "the service or the name service cannot be reached",
    "unauthorized": "the token was refused (before the upgrade)",
    "origin_not_allowed": "the page's Origin is not allowed (before the upgrade)",
}

# Either a bool (accept or not) from a token (None when none was given) and the request's Origin.
Authenticate = Callable[[str | None, str | None], bool | Awaitable[bool]]


class BrowserError(Exception):
    """A refusal or failure told to the browser: ``code`` (see `CODES`) and a readable message."""

    def __init__(self, code: str, message: str, **facts: Any) -> None:
        assert code in CODES, code
        super().__init__(message)
        self.code = code
        self.facts = facts

    def to_browser(self, request_id: int | None) -> dict[str, Any]:
        return {"op": "error", "id": request_id, "code": self.code, "message": str(self),
                **self.facts}


@dataclass(frozen=True)
class Limits:
    """Per browser connection: calls in flight, bytes per message, requests per second (a token
    bucket of ``burst`` refilled at ``rate``)."""

    max_in_flight: int = 64
    max_message: int = 64 * 1024
    rate: float = 50.0
    burst: int = 100

    def __post_init__(self) -> None:
        if self.max_in_flight < 1 or self.max_message < 64 or self.rate <= 0 or self.burst < 1:
            raise ValueError(f"gateway limits must be positive (max_message >= 64): {self}")


@dataclass(frozen=True)
class Exposure:
    """One service a browser may reach: every function (``functions`` None) or the ones named.
    An exposed service also takes messages from browsers."""

    name: str
    functions: frozenset[str] | None = None

    @classmethod
    def parse(cls, text: str) -> Exposure:
        """``Name`` or ``Name:*`` (everything), ``Name:f,g`` (those functions)."""
        name, _, funcs = text.partition(":")
        if not name:
            raise ValueError(f"--expose {text!r}: expected NAME, NAME:* or NAME:func1,func2")
        if funcs in ("", "*"):
            return cls(name)
        return cls(name, frozenset(f for f in funcs.split(",") if f))


@dataclass
class Policy:
    """The gateway's rules. ``origins`` None accepts a page served by the gateway's own host (and
    clients that send no Origin: not a browser); ``authenticate`` None accepts every token."""

    exposed: dict[str, Exposure] = field(default_factory=dict)
    origins: frozenset[str] | None = None
    authenticate: Authenticate | None = None
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def of(cls, exposed: Iterable[str | Exposure] = (), **kwargs: Any) -> Policy:
        items = [e if isinstance(e, Exposure) else Exposure.parse(e) for e in exposed]
        return cls(exposed={e.name: e for e in items}, **kwargs)

    def check_call(self, name: str, func: str) -> None:
        exposure = self.exposed.get(name)
        if exposure is None:
            raise BrowserError("not_exposed", f"{name!r} is not exposed to browsers")
        if exposure.functions is not None and func not in exposure.functions:
            raise BrowserError("not_exposed", f"{name!r} does not expose {func!r} to browsers")

    def check_send(self, name: str) -> None:
        if name not in self.exposed:
            raise BrowserError("not_exposed", f"{name!r} is not exposed to browsers")

    def visible(self, func: str, providers: list[str]) -> list[str]:
        """The providers of ``func`` a browser may call."""
        out = []
        for name in providers:
            exposure = self.exposed.get(name)
            if exposure is not None and (exposure.functions is None or func in exposure.functions):
                out.append(name)
        return out

    def origin_allowed(self, origin: str | None, host: str | None) -> bool:
        if origin is None:
            return True  # not a browser: browsers always send Origin on a WebSocket upgrade
        if self.origins is None:
            return host is not None and origin.split("://", 1)[-1] == host
        return "*" in self.origins or origin in self.origins

    async def token_accepted(self, token: str | None, origin: str | None) -> bool:
        if self.authenticate is None:
            return True
        verdict = self.authenticate(token, origin)
        if inspect.isawaitable(verdict):
            verdict = await verdict
        return bool(verdict)


class RateLimiter:
    """A token bucket: `take` is False once ``burst`` requests came faster than ``rate`` a second."""

    __slots__ = ("_at", "_burst", "_rate", "_tokens")

    def __init__(self, rate: float, burst: int) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

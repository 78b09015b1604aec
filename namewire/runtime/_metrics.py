"""`Metrics`: everything one node counts, in one place, as plain numbers.

Recording is a few attribute and list increments on the caller's thread: no locks, no label
objects, no allocation once a (peer, function) pair has been seen, because a node serves some
100,000 calls a second and the counting must cost a small fraction of a call. Exposition is done
from here too, by reading: `snapshot()` (what the built-in ``namewire.stats`` function returns and
what the dashboard and ``namewire top`` show) and `SERIES` (the table of metric names that the
Prometheus endpoint renders, `namewire.node._prometheus`).

It lives in the bottom layer so that the transport's sessions and the registry clients count into
the node's one `Metrics` without importing the node.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = [
    "BUCKETS",
    "SAMPLE_EVERY",
    "SAMPLE_MASK",
    "SERIES",
    "CallStats",
    "Metrics",
    "outcome_of",
    "quantile",
]

# Upper bounds (seconds) of the latency histogram's buckets, powers of two from 50 us (a loopback
# call) to about 13 s; one more bucket above the last. Powers of two because the bucket of a
# duration is then ``int(seconds * _SCALE).bit_length()``, a third of the cost of a bisection.
_FIRST = 0.00005
_SCALE = 1 / _FIRST
BUCKETS: tuple[float, ...] = tuple(_FIRST * 2**k for k in range(19))
_LAST = len(BUCKETS)  # the slot above the last bound
# One call in this many is timed for the latency histograms (every call is counted).
SAMPLE_EVERY = 8
SAMPLE_MASK = SAMPLE_EVERY - 1
# Raw slots kept per histogram: bit lengths up to 63 (a duration of 2**63 / _SCALE seconds).
_RAW_SLOTS = 64

# Every counter and gauge of `snapshot()["counters"]`, with its Prometheus type and help text.
# The Prometheus endpoint renders exactly this table (names get the ``namewire_`` prefix).
SERIES: dict[str, tuple[str, str]] = {
    "bytes_sent": ("counter", "Bytes of envelope bodies sent (without the 4-byte length prefix)"),
    "bytes_received": ("counter", "Bytes of envelope bodies received"),
    "connections": ("gauge", "Open connections (both directions)"),
    "connections_opened": ("counter", "Connections whose handshake completed"),
    "connections_closed": ("counter", "Connections that ended"),
    "pending_calls": ("gauge", "Calls this node made that wait for an answer"),
    "running_calls": ("gauge", "Calls to this node running as tasks (async functions)"),
    "mailbox_depth": ("gauge", "Messages in the mailbox not yet taken by get_msg"),
    "messages_received": ("counter", "Ordinary messages put in the mailbox"),
    "lease_renewals": ("counter", "Registry lease renewals that succeeded"),
    "lease_losses": ("counter", "Registry leases found expired or lost (registered again)"),
    "registry_reconnects": ("counter", "Reconnections to the registry after losing it"),
    "peer_reconnects": ("counter", "Connections opened again to a peer connected before"),
    "registry_lookups": ("counter", "Name look-ups asked of the registry client"),
    "registry_cache_hits": ("counter", "Name look-ups answered from the client's cache"),
}

# How a failed call is counted (the ``outcome`` label); a call that returned counts as "ok".
_OUTCOMES = {
    "CallTimeout": "timeout",
    "PeerLost": "lost",
    "NoSuchFunction": "no_such_function",
    "CancelledError": "cancelled",
}


def outcome_of(exc: BaseException) -> str:
    """The ``outcome`` label of a call that ended with ``exc``: timeout, lost, no_such_function,
    cancelled, or error (the remote function raised, or anything else)."""
    for kind in type(exc).__mro__:
        label = _OUTCOMES.get(kind.__name__)
        if label is not None:
            return label
    return "error"


class CallStats:
    """Calls of one function between this node and one peer: counts, failures, and a sampled
    latency histogram.

    ``count`` is every call (``calls``); ``failed`` counts by outcome, so the calls that returned
    are ``count - sum(failed.values())``. The histogram times one call in `SAMPLE_EVERY` (the
    first, then every eighth, in the order the calls start): ``buckets[i]`` counts timed calls that
    took less than ``BUCKETS[i]`` seconds and at least the bound before (the last slot:
    ``BUCKETS[-1]`` or more), ``seconds`` is their total and ``timed`` their number. Timing every
    call would cost a clock read and the bucket arithmetic on each, a tenth of a small call.

    `observe` indexes a list by the bit length of the duration in units of the first bound, with
    slots to spare above the last bucket (folded into it when read): no comparison, no search.
    """

    __slots__ = ("calls", "failed", "seconds", "slots")

    def __init__(self) -> None:
        self.calls = 0
        self.slots = [0] * _RAW_SLOTS
        self.seconds = 0.0
        self.failed: dict[str, int] = {}

    def start(self) -> bool:
        """Count a call; True when it is one to time (the hot paths inline this)."""
        n = self.calls
        self.calls = n + 1
        return not n & SAMPLE_MASK

    def observe(self, seconds: float) -> None:
        """A timed call took ``seconds`` (at most ~1.4e14 s: any that a clock can show)."""
        self.slots[int(seconds * _SCALE).bit_length()] += 1
        self.seconds += seconds

    @property
    def buckets(self) -> list[int]:
        slots = self.slots
        return [*slots[:_LAST], sum(slots[_LAST:])]

    @property
    def count(self) -> int:
        return self.calls

    @property
    def timed(self) -> int:
        return sum(self.slots)

    def as_dict(self) -> dict[str, Any]:
        return {"buckets": self.buckets, "seconds": self.seconds, "timed": self.timed,
                "failed": dict(self.failed), "count": self.calls}


def quantile(buckets: list[int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a histogram in `BUCKETS` form, interpolated within its bucket
    (as Prometheus' ``histogram_quantile`` does); None when it is empty."""
    total = sum(buckets)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(buckets):
        if n and seen + n >= rank:
            low = BUCKETS[i - 1] if i > 0 else 0.0
            high = BUCKETS[i] if i < len(BUCKETS) else BUCKETS[-1]
            return low + (high - low) * ((rank - seen) / n)
        seen += n
    return BUCKETS[-1]


class Metrics:
    """The counters of one node. The record methods are called on the hot path; read with
    `snapshot`. Plain integer attributes (``lease_renewals``...) are bumped in place by whoever
    sees the event; gauges and counters kept elsewhere (bytes on each connection) come from the
    ``readers`` the owner adds, called only when a snapshot is taken."""

    __slots__ = (
        "bytes_received",
        "bytes_sent",
        "connections_closed",
        "connections_opened",
        "errors",
        "lease_losses",
        "lease_renewals",
        "made",
        "messages_received",
        "peer_reconnects",
        "readers",
        "registry_cache_hits",
        "registry_lookups",
        "registry_reconnects",
        "served",
        "service",
        "started",
    )

    def __init__(self, service: str = "") -> None:
        self.service = service
        self.started = time.time()
        self.made: dict[tuple[str, str], CallStats] = {}
        self.served: dict[tuple[str, str], CallStats] = {}
        # The last failures, newest last: what the dashboard lists as recent errors.
        self.errors: deque[dict[str, Any]] = deque(maxlen=50)
        self.readers: list[Callable[[], dict[str, float]]] = []
        self.lease_renewals = 0
        self.lease_losses = 0
        self.registry_reconnects = 0
        self.peer_reconnects = 0
        self.registry_lookups = 0
        self.registry_cache_hits = 0
        self.connections_opened = 0
        self.connections_closed = 0
        self.messages_received = 0
        # Bytes of connections that have ended; the open ones' are read from them (``readers``).
        self.bytes_sent = 0
        self.bytes_received = 0

    # -- recording (hot path) --------------------------------------------------------------------

    def made_stats(self, peer: str | None, func: str) -> CallStats:
        """The histogram of calls we make to ``peer``'s ``func``: resolved once per session and
        function and kept there (`Session`), so a call records without building a key."""
        key = (peer or "", func)
        stats = self.made.get(key)
        if stats is None:
            stats = self.made[key] = CallStats()
        return stats

    def served_stats(self, caller: str | None, func: str) -> CallStats:
        """The histogram of calls ``caller`` makes to our ``func`` (kept per session as well)."""
        key = (caller or "", func)
        stats = self.served.get(key)
        if stats is None:
            stats = self.served[key] = CallStats()
        return stats

    def call_made(self, peer: str | None, func: str, seconds: float) -> None:
        """A call we made to ``peer`` returned after ``seconds`` (counted and timed: the hot
        path, `Session.call`, counts through `CallStats` and times one call in `SAMPLE_EVERY`)."""
        stats = self.made_stats(peer, func)
        stats.calls += 1
        stats.observe(seconds)

    def call_served(self, caller: str | None, func: str, seconds: float) -> None:
        """A call from ``caller`` was answered with a result after ``seconds`` (counted and
        timed)."""
        stats = self.served_stats(caller, func)
        stats.calls += 1
        stats.observe(seconds)

    def call_failed(
        self, made: bool, peer: str | None, func: str, seconds: float | None, outcome: str,
        message: str, trace: str | None = None, *, stats: CallStats | None = None,
    ) -> None:
        """A call ended without a result (``made``: one of ours, else one we served).

        Without ``stats`` it is counted here (and timed, unless ``seconds`` is None); with it, the
        caller has counted it through ``stats.start()`` already and passes ``seconds`` only when
        that chose it for timing.
        """
        if stats is None:
            stats = self.made_stats(peer, func) if made else self.served_stats(peer, func)
            stats.calls += 1
        if seconds is not None:
            stats.observe(seconds)
        stats.failed[outcome] = stats.failed.get(outcome, 0) + 1
        self.errors.append({
            "time": time.time(), "direction": "made" if made else "served", "peer": peer or "",
            "function": func, "outcome": outcome, "message": message[:300],
            "trace": trace or "",
        })

    def session_closed(self, connection: Any, opened: bool) -> None:
        """A connection ended (``opened``: its handshake had completed): keep its byte counts."""
        self.bytes_sent += connection.bytes_sent
        self.bytes_received += connection.bytes_received
        if opened:
            self.connections_closed += 1

    # -- reading ---------------------------------------------------------------------------------

    def counters(self) -> dict[str, float]:
        """Every series of `SERIES` that this node knows, by name."""
        values: dict[str, float] = {
            "lease_renewals": self.lease_renewals,
            "lease_losses": self.lease_losses,
            "registry_reconnects": self.registry_reconnects,
            "peer_reconnects": self.peer_reconnects,
            "registry_lookups": self.registry_lookups,
            "registry_cache_hits": self.registry_cache_hits,
            "connections_opened": self.connections_opened,
            "connections_closed": self.connections_closed,
            "messages_received": self.messages_received,
        }
        for read in self.readers:
            values.update(read())
        # Bytes of the open connections (from a reader) plus those of the ones that ended.
        values["bytes_sent"] = values.get("bytes_sent", 0) + self.bytes_sent
        values["bytes_received"] = values.get("bytes_received", 0) + self.bytes_received
        return values

    def snapshot(self) -> dict[str, Any]:
        """Everything counted, as plain data (msgpack and JSON carry it): the reply of
        ``namewire.stats``. Calls are listed per (peer, function) with their histogram in
        `BUCKETS` form; ``errors`` are the last failures, oldest first."""
        return {
            "service": self.service,
            "time": time.time(),
            "started": self.started,
            "buckets": list(BUCKETS),
            "made": [{"peer": p, "function": f, **s.as_dict()} for (p, f), s in self.made.items()],
            "served": [{"caller": c, "function": f, **s.as_dict()}
                       for (c, f), s in self.served.items()],
            "counters": self.counters(),
            "errors": list(self.errors),
        }

"""`EtcdGateway`: a small etcd v3 client over etcd's JSON gateway (``/v3/...`` on the client port).

It knows only what the etcd registry needs: ranges, one-key transactions, leases (grant, one
keep-alive, revoke, time-to-live) and a prefix watch from a revision. Keys and values are bytes
on our side and base64 on the wire; revisions and lease ids are strings in etcd's JSON and ints here.

Endpoints are tried in turn: a request that cannot reach one moves on to the next, and the one
that answered is used first from then on. Every request is bounded by ``timeout``. Watch and
lease requests carry ``hasleader`` so that a member cut off from the cluster's leader refuses
them instead of answering from a stale copy (etcd's ``WithRequireLeader``).

Why not a gRPC client: aetcd has no TLS and no background keep-alive, etcd3 is unmaintained and
thread-based, and grpcio does not survive ``fork`` (worker processes). httpx is a well-kept asyncio
HTTP client with TLS and streamed responses, which is all the gateway needs.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from ..errors import RegistryUnavailable
from ._etcd_url import EtcdTarget, client_ssl_context, parse_etcd_url

__all__ = ["EtcdGateway", "EtcdTarget", "KeyValue", "WatchCompacted", "parse_etcd_url", "prefix_end"]

log = logging.getLogger("namewire.registry.etcd")
# httpx logs every request at INFO: a line per lease renewal in every node's log. Failures reach
# our own log, with the endpoint, where they matter.
logging.getLogger("httpx").setLevel(logging.WARNING)

# httpx wraps most transport failures, but not an SSL alert read after the handshake (TLS 1.3
# servers refuse a missing client certificate that way).
_TRANSPORT_ERRORS = (httpx.HTTPError, ssl.SSLError)

_REQUIRE_LEADER = {"Grpc-Metadata-hasleader": "true"}


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int


class WatchCompacted(Exception):
    """The watch's start revision was compacted away: read the range again (``revision``)."""

    def __init__(self, revision: int) -> None:
        super().__init__(revision)
        self.revision = revision


def prefix_end(prefix: bytes) -> bytes:
    """The ``range_end`` that selects every key starting with ``prefix``."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _kv(data: dict[str, Any]) -> KeyValue:
    return KeyValue(
        key=base64.b64decode(data.get("key", "")),
        value=base64.b64decode(data.get("value", "")),
        create_revision=int(data.get("create_revision", 0)),
        mod_revision=int(data.get("mod_revision", 0)),
        lease=int(data.get("lease", 0)),
    )


class EtcdGateway:
    """Requests to an etcd cluster through its JSON gateway; see the module docstring."""

    def __init__(self, target: EtcdTarget, *, timeout: float) -> None:
        self.target = target
        self.timeout = timeout
        verify: ssl.SSLContext | bool = client_ssl_context(target) if target.tls else False
        # One connection per endpoint is plenty; the watch stream takes a connection of its own.
        self._http = httpx.AsyncClient(verify=verify, timeout=timeout, trust_env=False)
        self._endpoints = list(target.endpoints)

    @property
    def endpoint(self) -> str:
        """The endpoint tried first (the last one that answered)."""
        return self._endpoints[0]

    def rotate(self) -> None:
        """Try the next endpoint first from now on (this one seems cut off)."""
        self._endpoints.append(self._endpoints.pop(0))

    async def close(self) -> None:
        await self._http.aclose()

    # -- requests ------------------------------------------------------------------------------

    async def request(self, path: str, body: dict[str, Any], *, leader: bool = False,
                      timeout: float | None = None) -> dict[str, Any]:
        """POST ``body`` to ``path`` on the first endpoint that answers; its JSON answer.

        Raises `RegistryUnavailable` naming every endpoint and why, when none answers.
        """
        failures = []
        for endpoint in list(self._endpoints):
            try:
                response = await self._http.post(
                    endpoint + path, json=body, headers=_REQUIRE_LEADER if leader else None,
                    timeout=timeout or self.timeout,
                )
            except _TRANSPORT_ERRORS as exc:
                failures.append(f"{endpoint}: {type(exc).__name__} {exc}".rstrip())
                self._demote(endpoint)
                continue
            answer = _json(response)
            if response.status_code == 200:
                self._promote(endpoint)
                return answer
            failures.append(f"{endpoint}: {response.status_code} {answer.get('error') or answer}")
            self._demote(endpoint)
        raise RegistryUnavailable(
            f"etcd at {self.target.url} unreachable: {'; '.join(failures)}"
        )

    async def range(self, key: bytes, end: bytes | None = None) -> tuple[int, list[KeyValue]]:
        """Keys in ``[key, end)`` (just ``key`` without ``end``): (store revision, key-values)."""
        body: dict[str, Any] = {"key": _b64(key)}
        if end is not None:
            body["range_end"] = _b64(end)
        answer = await self.request("/v3/kv/range", body)
        return _revision(answer), [_kv(kv) for kv in answer.get("kvs", ())]

    async def create(self, key: bytes, value: bytes, lease: int) -> tuple[bool, KeyValue | None]:
        """Put ``key`` only if it does not exist (create revision 0), in one transaction.

        (True, None) if created, else (False, the key-value that holds it).
        """
        put = {"request_put": {"key": _b64(key), "value": _b64(value), "lease": str(lease)}}
        return await self._txn(key, {"target": "CREATE", "create_revision": "0"}, put)

    async def update(self, key: bytes, value: bytes, lease: int) -> tuple[bool, KeyValue | None]:
        """Put ``key`` only if it is still held under ``lease``; as `create`."""
        put = {"request_put": {"key": _b64(key), "value": _b64(value), "lease": str(lease)}}
        return await self._txn(key, {"target": "LEASE", "lease": str(lease)}, put)

    async def delete(self, key: bytes, lease: int) -> bool:
        """Delete ``key`` only if it is held under ``lease``; True if it was."""
        done, _ = await self._txn(key, {"target": "LEASE", "lease": str(lease)},
                                  {"request_delete_range": {"key": _b64(key)}})
        return done

    async def _txn(self, key: bytes, compare: dict[str, Any],
                   success: dict[str, Any]) -> tuple[bool, KeyValue | None]:
        body = {
            "compare": [{"key": _b64(key), "result": "EQUAL", **compare}],
            "success": [success],
            "failure": [{"request_range": {"key": _b64(key)}}],
        }
        answer = await self.request("/v3/kv/txn", body)
        if answer.get("succeeded"):
            return True, None
        responses = answer.get("responses") or [{}]
        kvs = responses[0].get("response_range", {}).get("kvs", ())
        return False, _kv(kvs[0]) if kvs else None

    async def grant(self, ttl: int) -> tuple[int, int]:
        """A new lease: (id, granted TTL in seconds)."""
        answer = await self.request("/v3/lease/grant", {"TTL": ttl}, leader=True)
        if answer.get("error"):
            raise RegistryUnavailable(f"etcd at {self.target.url}: lease grant refused: "
                                      f"{answer['error']}")
        return int(answer["ID"]), int(answer.get("TTL", ttl))

    async def keep_alive(self, lease: int, *, timeout: float | None = None) -> int:
        """Renew ``lease`` once; its new TTL in seconds, 0 if etcd no longer knows it."""
        answer = await self.request("/v3/lease/keepalive", {"ID": str(lease)}, leader=True,
                                    timeout=timeout)
        # A stream answers 200 even when it failed (no leader during an election, say): then
        # there is an "error" and no "result". Only a result without TTL means the lease is gone.
        result = answer.get("result")
        if not isinstance(result, dict):
            raise RegistryUnavailable(f"etcd at {self.target.url}: lease keepalive failed: "
                                      f"{answer.get('error') or answer}")
        return int(result.get("TTL", 0))

    async def revoke(self, lease: int) -> None:
        """End ``lease`` now: etcd deletes its keys, and watchers see them go at once."""
        await self.request("/v3/lease/revoke", {"ID": str(lease)})

    async def time_to_live(self, lease: int) -> tuple[int, int]:
        """(remaining TTL, granted TTL) of ``lease``; remaining -1 if it is gone."""
        answer = await self.request("/v3/lease/timetolive", {"ID": str(lease)})
        return int(answer.get("TTL", -1)), int(answer.get("grantedTTL", 0))

    async def probe(self, *, timeout: float | None = None) -> None:
        """A linearizable read of one key: answers only where a leader is reachable."""
        await self.request("/v3/kv/range", {"key": _b64(b"\0"), "count_only": True},
                           leader=True, timeout=timeout)

    async def watch(self, prefix: bytes, start_revision: int,
                    endpoint: str | None = None) -> AsyncIterator[tuple[int, list[dict[str, Any]]]]:
        """Changes of keys under ``prefix`` from ``start_revision`` on, as (revision, events).

        Each event is ``{"type": "PUT" | "DELETE", "kv": KeyValue}``. Raises `WatchCompacted`
        when the start revision is gone, `RegistryUnavailable` when the stream breaks or the
        member loses its leader. Runs until the caller stops iterating.
        """
        endpoint = endpoint or self.endpoint
        body = {"create_request": {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix)),
                                   "start_revision": str(start_revision)}}
        timeout = httpx.Timeout(self.timeout, read=None)
        try:
            async with self._http.stream("POST", endpoint + "/v3/watch", json=body,
                                         headers=_REQUIRE_LEADER, timeout=timeout) as response:
                if response.status_code != 200:
                    raise RegistryUnavailable(f"etcd watch at {endpoint}: {response.status_code}")
                async for line in response.aiter_lines():
                    if not line.strip():
                        continue
                    message = json.loads(line)
                    if "error" in message:
                        raise RegistryUnavailable(f"etcd watch at {endpoint}: {message['error']}")
                    result = message.get("result", {})
                    compacted = int(result.get("compact_revision", 0))
                    if compacted:
                        raise WatchCompacted(compacted)
                    if result.get("canceled"):
                        reason = result.get("cancel_reason") or "cancelled by the server"
                        raise RegistryUnavailable(f"etcd watch at {endpoint}: {reason}")
                    events = [
                        {"type": e.get("type", "PUT"), "kv": _kv(e.get("kv", {}))}
                        for e in result.get("events", ())
                    ]
                    yield _revision(result), events
        except _TRANSPORT_ERRORS as exc:
            raise RegistryUnavailable(
                f"etcd watch at {endpoint}: {type(exc).__name__} {exc}".rstrip()
            ) from None
        raise RegistryUnavailable(f"etcd watch at {endpoint}: stream ended")

    # -- internals -----------------------------------------------------------------------------

    def _promote(self, endpoint: str) -> None:
        if self._endpoints[0] != endpoint:
            self._endpoints.remove(endpoint)
            self._endpoints.insert(0, endpoint)

    def _demote(self, endpoint: str) -> None:
        if self._endpoints[0] == endpoint and len(self._endpoints) > 1:
            self.rotate()


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {"error": response.text[:200]}
    return data if isinstance(data, dict) else {"error": repr(data)[:200]}


def _revision(answer: dict[str, Any]) -> int:
    return int(answer.get("header", {}).get("revision", 0))

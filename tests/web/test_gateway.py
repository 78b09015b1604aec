"""The gateway with a Python WebSocket client as the browser: by-name calls, messages both ways,
the allow-list, the checks before the upgrade, and each per-connection limit with its error."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

import namewire
from namewire.cli._cluster import format_table
from namewire.gateway import Gateway, Limits, Policy, client_source, mint_token, secret_tokens
from namewire.observe import ClusterView
from tests.conftest import Processes
from tests.etcd_cluster import EtcdCluster, etcd_cluster
from tests.node.test_by_name import wait_for_name, wait_until

pytestmark = pytest.mark.timeout(40)

JS_FILE = Path(namewire.__file__).parent / "gateway" / "static" / "namewire.js"


class Browser:
    """A browser as the gateway sees one: JSON requests with ids, answers matched by id."""

    def __init__(self, ws: ClientConnection, name: str) -> None:
        self.ws = ws
        self.name = name
        self._next = 1
        self.pushed: list[dict[str, Any]] = []

    async def request(self, **body: Any) -> dict[str, Any]:
        request_id = self._next
        self._next += 1
        await self.ws.send(json.dumps({"id": request_id, **body}))
        return await self.answer(request_id)

    async def answer(self, request_id: int) -> dict[str, Any]:
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
            if message.get("id") == request_id:
                return message
            self.pushed.append(message)

    async def pushed_message(self) -> dict[str, Any]:
        if self.pushed:
            return self.pushed.pop(0)
        return json.loads(await asyncio.wait_for(self.ws.recv(), 10))


@asynccontextmanager
async def browser(url: str, **kwargs: Any) -> AsyncIterator[Browser]:
    async with ws_connect(url, **kwargs) as ws:
        welcome = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert welcome["op"] == "welcome"
        yield Browser(ws, welcome["name"])


@asynccontextmanager
async def gateway_cluster(
    procs: Processes, policy: Policy, registry: str | None = None, call_timeout: float = 5
) -> AsyncIterator[tuple[Gateway, namewire.Node]]:
    """Name service (or the ``registry`` given) and PlusServer in processes; the gateway and a
    test node in this one."""
    ns = registry or procs.nameservice()[0]
    procs.service("web_service.py", "PlusServer", ns)
    gateway = Gateway("gw", policy=policy, call_timeout=call_timeout)
    me = namewire.Node("gw-tester")
    async with gateway.serve("ws://127.0.0.1:0/", nameservice=ns), me.serve(nameservice=ns):
        await wait_for_name(me, "PlusServer")
        await wait_for_name(me, "gw")
        yield gateway, me


async def test_calls_messages_and_providers_by_name(procs: Processes) -> None:
    policy = Policy.of(["PlusServer:plus,fail,notify,slow"])
    async with gateway_cluster(procs, policy) as (gateway, me), browser(gateway.url) as b:
        assert b.name == "gw/1"
        assert gateway.url.startswith("ws://127.0.0.1:") and not gateway.url.endswith(":80/")
        assert await b.request(op="call", name="PlusServer", func="plus", args=[1, 2]) == {
            "op": "result", "id": 1, "value": 3}
        assert (await b.request(op="providers", func="plus"))["value"] == ["PlusServer"]
        # secret is provided, but not exposed: browsers do not see it, nor can they call it.
        assert (await b.request(op="providers", func="secret"))["value"] == []
        refused = await b.request(op="call", name="PlusServer", func="secret", args=[])
        assert refused["code"] == "not_exposed" and "'secret'" in refused["message"]
        failed = await b.request(op="call", name="PlusServer", func="fail", args=["no!"])
        assert failed["code"] == "remote_error" and failed["remote_type"] == "ValueError"
        assert (await b.request(op="send", name="Nobody", msg=1))["code"] == "not_exposed"
        # A service sends to the browser session by its name.
        assert (await b.request(op="call", name="PlusServer", func="notify",
                                args=[b.name, {"hi": "browser"}]))["value"] is True
        assert await b.pushed_message() == {"op": "msg", "from": "PlusServer",
                                            "msg": {"hi": "browser"}}
        # A message from the browser reaches the service, which answers the browser's name.
        assert (await b.request(op="send", name="PlusServer",
                                msg={"reply_to": b.name, "text": "ping"}))["value"] is None
        assert (await b.pushed_message())["msg"] == {"echo": "ping"}
        # Plain send_msg to the gateway works too, and the test node sees the browser listed.
        await me.send_msg("gw", {"to": b.name, "msg": "direct"})
        assert await b.pushed_message() == {"op": "msg", "from": "gw-tester", "msg": "direct"}
        assert await me.rpc_call("gw", "browsers") == [b.name]
    # The browser is gone: delivering to it says so.
    async with gateway_cluster(procs, policy) as (_, me):
        with pytest.raises(namewire.RemoteError, match="no browser session 'gw/9'"):
            await namewire.gateway.send_to_browser(me, "gw/9", "anyone?")


@pytest.fixture(scope="module")
def etcd_server() -> Iterator[EtcdCluster]:
    cluster = etcd_cluster(1)
    try:
        yield cluster
    finally:
        cluster.stop()


_prefixes = itertools.count()


@pytest.fixture(params=["nameservice", "etcd"])
def registry_url(request: pytest.FixtureRequest, procs: Processes) -> str:
    """Each registry backend: a name service process, or a key prefix of its own in etcd."""
    if request.param == "nameservice":
        return procs.nameservice()[0]
    cluster: EtcdCluster = request.getfixturevalue("etcd_server")
    return f"{cluster.url}/web{next(_prefixes)}"


async def test_any_node_sends_to_a_browser_by_its_name(procs: Processes, registry_url: str) -> None:
    """The browser's name is registered while it is connected: a plain send_msg to it from any
    node arrives with the sender's name; it takes no calls; once it left, senders are told."""
    policy = Policy.of(["PlusServer:plus"])
    async with gateway_cluster(procs, policy, registry_url) as (gateway, me):
        async with browser(gateway.url) as b:
            assert me.registry is not None
            assert (await me.registry.lookup(b.name)).via == "gw"
            assert re.search(r"^gw/1\s+via gw\s", format_table(await me.registry.services()),
                             re.MULTILINE)
            shown = {s["name"] for s in (await ClusterView(me).refresh())["services"]}
            assert "gw" in shown and b.name not in shown  # the dashboard lists services only
            await me.send_msg(b.name, {"hi": "by name"})
            assert await b.pushed_message() == {"op": "msg", "from": "gw-tester",
                                                "msg": {"hi": "by name"}}
            # From a service in another process, which looks the name up itself.
            assert await me.rpc_call("PlusServer", "tell", b.name, "from a process") is True
            assert await b.pushed_message() == {"op": "msg", "from": "PlusServer",
                                                "msg": "from a process"}
            with pytest.raises(namewire.NoSuchFunction, match="'gw/1' has no function 'plus'"):
                await me.rpc_call(b.name, "plus", 1, 2)
            # Its messages keep their order, on the route to the gateway.
            for i in range(50):
                await me.send_msg(b.name, i)
            assert [(await b.pushed_message())["msg"] for _ in range(50)] == list(range(50))
            async with browser(gateway.url) as second:
                assert second.name == "gw/2"
                await me.send_msg(second.name, "second")
                assert (await second.pushed_message())["msg"] == "second"
            left = b.name

        async def told_it_left() -> bool:
            try:
                await me.send_msg(left, "anyone?")
            except namewire.NameNotFound:
                return True
            return False

        await wait_until(told_it_left, timeout=5)
        with pytest.raises(namewire.NameNotFound, match="no service named 'gw/1'"):
            await me.send_msg(left, "anyone?")
        with pytest.raises(namewire.RemoteError, match="NameNotFound"):
            await me.rpc_call("PlusServer", "tell", left, "anyone?")
        assert gateway.browsers == {}


async def test_bad_requests_get_specific_errors_and_the_connection_carries_on(
    procs: Processes,
) -> None:
    async with gateway_cluster(procs, Policy.of(["PlusServer"])) as (gateway, _):
        async with browser(gateway.url) as b:
            await b.ws.send("not json")
            error = json.loads(await b.ws.recv())
            assert error["code"] == "bad_request" and error["id"] is None
            assert (await b.request(op="dance"))["code"] == "bad_request"
            assert (await b.request(op="call", name="PlusServer"))["code"] == "bad_request"
            missing = await b.request(op="call", name="PlusServer", func="minus", args=[])
            assert missing["code"] == "no_such_function"
            assert (await b.request(op="call", name="PlusServer", func="plus",
                                    args=[2, 2]))["value"] == 4


async def test_each_limit_has_its_own_error(procs: Processes) -> None:
    limits = Limits(max_in_flight=2, max_message=200, rate=5, burst=8)
    policy = Policy.of(["PlusServer"], limits=limits)
    async with gateway_cluster(procs, policy, call_timeout=1.5) as (gateway, _):
        async with browser(gateway.url) as b:
            big = await b.request(op="send", name="PlusServer", msg="x" * 500)
            assert big["code"] == "too_large" and big["limit"] == 200 and big["size"] > 500
            # Two slow calls fill the connection; a third is refused at once.
            for request_id in (10, 11):
                await b.ws.send(json.dumps({"id": request_id, "op": "call", "name": "PlusServer",
                                            "func": "slow", "args": [0.5]}))
            busy = await b.request(op="call", name="PlusServer", func="plus", args=[1, 1])
            assert busy["code"] == "too_many_calls" and busy["limit"] == 2
            assert (await b.answer(10))["value"] == 0.5
            assert (await b.answer(11))["value"] == 0.5
            # A burst beyond 8 requests is refused with rate_limited, then the rate refills.
            codes = [(await b.request(op="providers", func="plus")).get("code") for _ in range(8)]
            assert "rate_limited" in codes
            await asyncio.sleep(0.5)
            assert (await b.request(op="providers", func="plus"))["value"] == ["PlusServer"]
            # One browser call may take --call-timeout (1.5 s here), then it is answered timeout.
            late = await b.request(op="call", name="PlusServer", func="slow", args=[10])
            assert late["code"] == "timeout" and "1.5" in late["message"], late


async def test_origin_and_token_are_checked_before_the_upgrade(procs: Processes) -> None:
    async def check(token: str | None, origin: str | None) -> bool:
        return token == "let-me-in"

    policy = Policy.of(["PlusServer"], origins=frozenset({"http://app.test"}), authenticate=check)
    async with gateway_cluster(procs, policy) as (gateway, _):
        url = gateway.url
        with pytest.raises(InvalidStatus) as refused:
            await ws_connect(url + "?token=let-me-in", origin="http://evil.test")
        assert refused.value.response.status_code == 403
        assert json.loads(refused.value.response.body)["code"] == "origin_not_allowed"
        with pytest.raises(InvalidStatus) as refused:
            await ws_connect(url + "?token=wrong", origin="http://app.test")
        assert refused.value.response.status_code == 401
        assert json.loads(refused.value.response.body)["code"] == "unauthorized"
        async with browser(url + "?token=let-me-in", origin="http://app.test") as b:
            assert (await b.request(op="call", name="PlusServer", func="plus",
                                    args=[3, 4]))["value"] == 7
        async with browser(url, origin="http://app.test",
                           additional_headers={"Authorization": "Bearer let-me-in"}) as b:
            assert b.name.startswith("gw/")
        # What the JS client asks after a refused upgrade: the same checks over plain HTTP.
        http = url.replace("ws://", "http://")
        with pytest.raises(urllib.error.HTTPError) as answer:
            await asyncio.to_thread(urllib.request.urlopen, http + "?token=wrong", timeout=5)
        answer.value.close()
        assert answer.value.code == 401
        with pytest.raises(urllib.error.HTTPError) as answer:
            await asyncio.to_thread(urllib.request.urlopen, http + "?token=let-me-in", timeout=5)
        answer.value.close()
        assert answer.value.code == 426


async def test_tokens_minted_with_the_cluster_secret_open_the_gateway(procs: Processes) -> None:
    secret = b"k" * 32
    policy = Policy.of(["PlusServer"], authenticate=secret_tokens(secret))
    async with gateway_cluster(procs, policy) as (gateway, _):
        async with browser(f"{gateway.url}?token={mint_token(secret, 'alice')}") as b:
            assert (await b.request(op="call", name="PlusServer", func="plus",
                                    args=[1, 1]))["value"] == 2
        for token in (mint_token(b"x" * 32, "alice"), mint_token(secret, "alice", ttl=0.001)):
            await asyncio.sleep(0.01)
            with pytest.raises(InvalidStatus) as refused:
                await ws_connect(f"{gateway.url}?token={token}")
            assert refused.value.response.status_code == 401


async def test_the_gateway_serves_the_js_client(procs: Processes) -> None:
    async with gateway_cluster(procs, Policy()) as (gateway, _):
        http = gateway.url.replace("ws://", "http://") + "namewire.js"
        with await asyncio.to_thread(urllib.request.urlopen, http, timeout=5) as response:
            assert response.headers["Content-Type"].startswith("text/javascript")
            assert response.headers["Access-Control-Allow-Origin"] == "*"
            assert response.read() == client_source() == JS_FILE.read_bytes()
        assert b"export async function connect" in client_source()


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--listen", "tcp://127.0.0.1:1"], "a gateway listens on ws:// or wss://"),
        (["--expose", ":plus"], "expected NAME, NAME:* or NAME:func1,func2"),
        (["--auth", "nowhere.py:check"], "no such file: nowhere.py"),
        (["--max-message", "10"], "gateway limits must be positive"),
        (["--auth", "secret"], "--auth secret needs the cluster's shared secret"),
    ],
)
def test_the_gateway_command_says_what_is_wrong(argv: list[str], says: str) -> None:
    out = subprocess.run([sys.executable, "-m", "namewire", "gateway", "--nameservice",
                          "tcp://127.0.0.1:1", *argv], capture_output=True, text=True, timeout=20)
    assert out.returncode != 0
    assert says in out.stderr

"""The gateway in a secured cluster. With TLS identities and a policy file, the gateway's identity
must be allowed to register its browsers' names; when it is not, browsers still connect,
unregistered, and the log says so (real certificates, a name service in this process). With the
cluster secret, every process proves it and browsers bring tokens minted from it (processes)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

import namewire
from namewire.gateway import Gateway, Policy, mint_token
from tests.conftest import Processes, free_port, wait_port
from tests.security.conftest import Certs, certs, nameservice  # noqa: F401 -- certs: a fixture
from tests.web.test_gateway import browser

pytestmark = pytest.mark.timeout(40)


@pytest.mark.parametrize("may_register", ['["Caller", "Caller/*"]', '["Caller"]'])
async def test_the_policy_file_decides_whether_browser_names_register(
    certs: Certs, tmp_path: Path, caplog: pytest.LogCaptureFixture, may_register: str  # noqa: F811
) -> None:
    rules = tmp_path / "policy.toml"
    rules.write_text(f'[Caller]\nregister = {may_register}\n\n[PlusServer]\nregister = ["PlusServer"]\n')
    registers = "Caller/*" in may_register
    async with nameservice(certs.security("nameservice", policy=str(rules)),
                           "tls://127.0.0.1:0") as ns:
        gateway = Gateway("Caller", policy=Policy.of([]),
                          node=namewire.Node("Caller", security=certs.security("Caller")))
        me = namewire.Node("PlusServer", security=certs.security("PlusServer"))
        async with gateway.serve("ws://127.0.0.1:0/", nameservice=ns, listen="tls://127.0.0.1:0",
                                 unix=False), me.serve(nameservice=ns, listen=None):
            with caplog.at_level(logging.WARNING, logger="namewire.gateway"):
                async with browser(gateway.url) as b:
                    assert b.name == "Caller/1"
                    if registers:
                        await me.send_msg(b.name, "allowed")
                        assert (await b.pushed_message())["msg"] == "allowed"
                    else:
                        with pytest.raises(namewire.NameNotFound):
                            await me.send_msg(b.name, "refused")
    warned = [r.getMessage() for r in caplog.records if "is not registered" in r.getMessage()]
    if registers:
        assert warned == []
    else:
        assert len(warned) == 1 and "may not register 'Caller/1'" in warned[0], warned


async def test_a_gateway_process_in_a_cluster_with_a_secret_takes_tokens_minted_from_it(
    procs: Processes, tmp_path: Path
) -> None:
    """Every process proves the cluster secret (--secret-file); browsers bring tokens minted
    from it, and a service's plain send_msg to a browser's name crosses the secured cluster."""
    secret = b"a cluster secret of 32 bytes...."
    path = tmp_path / "secret"
    path.write_bytes(secret)
    path.chmod(0o600)
    ns_port, gw_port = free_port(), free_port()
    ns = f"tcp://127.0.0.1:{ns_port}"
    wait_port(ns_port, procs.start("-m", "namewire", "nameservice", "--listen", ns,
                                   "--secret-file", str(path), "--log-level", "WARNING"))
    procs.service("web_service.py", "PlusServer", ns, "--secret-file", str(path))
    url = f"ws://127.0.0.1:{gw_port}/"
    wait_port(gw_port, procs.start(
        "-m", "namewire", "gateway", "--listen", url, "--nameservice", ns, "--expose",
        "PlusServer:plus,tell", "--auth", "secret", "--secret-file", str(path),
        "--log-level", "WARNING"))
    for token in ("", mint_token(b"another secret, also 32 bytes..", "eve")):
        with pytest.raises(InvalidStatus) as refused:
            await ws_connect(f"{url}?token={token}")
        assert refused.value.response.status_code == 401
    async with browser(f"{url}?token={mint_token(secret, 'alice')}") as b:
        for _ in range(100):  # PlusServer registers meanwhile
            answer = await b.request(op="call", name="PlusServer", func="plus", args=[1, 2])
            if answer.get("code") != "no_such_name":
                break
            await asyncio.sleep(0.1)
        assert answer == {"op": "result", "id": answer["id"], "value": 3}
        told = await b.request(op="call", name="PlusServer", func="tell", args=[b.name, "hi"])
        assert told["value"] is True
        assert await b.pushed_message() == {"op": "msg", "from": "PlusServer", "msg": "hi"}

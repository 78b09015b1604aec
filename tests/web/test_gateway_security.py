"""The gateway in a cluster with TLS identities and a policy file: the gateway's identity must be
allowed to register its browsers' names; when it is not, browsers still connect, unregistered,
and the log says so. Real certificates, real sockets, a name service in this process."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import namewire
from namewire.gateway import Gateway, Policy
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

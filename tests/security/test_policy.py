"""The policy file: identities (certificate names) -> names they may register, functions they may
call. Real certificates, real sockets, a name service in this process."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

import namewire
from namewire import Forbidden, Security
from namewire.transport import Policy

from .conftest import Certs, nameservice

POLICY = """
# PlusServer may hold Plus* names; Caller may call plus only; everyone else nothing.
[PlusServer]
register = ["Plus*"]

[Caller]
call = ["PlusServer.plus"]

["*"]
register = []
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> str:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    return str(path)


def served(node: namewire.Node) -> namewire.Node:
    node.function(lambda a, b: a + b, name="plus")
    node.function(lambda a, b: a - b, name="minus")
    return node


async def test_an_identity_registers_only_the_names_it_may_hold(
    certs: Certs, policy_file: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with nameservice(certs.security("nameservice", policy=policy_file),
                           "tls://127.0.0.1:0") as ns:
        plus = served(namewire.Node("PlusServer", security=certs.security("PlusServer")))
        async with plus.serve(nameservice=ns, listen="tls://127.0.0.1:0", unix=False):
            # The same certificate under a name its patterns do not cover: refused, nothing stored.
            other = namewire.Node("Other", security=certs.security("PlusServer"))
            caplog.clear()
            with caplog.at_level(logging.INFO, logger="namewire.node"), \
                    pytest.raises(Forbidden) as refused:
                async with other.serve(nameservice=ns, listen="tls://127.0.0.1:0", unix=False):
                    pass
            assert "identity 'PlusServer' may not register 'Other'" in str(refused.value)
            assert policy_file in str(refused.value)
            records = [r.getMessage() for r in caplog.records if "may not register" in r.getMessage()]
            assert len(records) == 1 and "'PlusServer'" in records[0], records
            caller = namewire.Node("Caller", security=certs.security("Caller"))
            async with caller.serve(nameservice=ns, listen=None):
                assert await caller.rpc_call("PlusServer", "plus", 1, 2) == 3
                with pytest.raises(namewire.NameNotFound):
                    await caller.rpc_call("Other", "plus", 1, 2)


async def test_a_caller_calls_only_the_functions_it_may(
    certs: Certs, policy_file: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with nameservice(certs.security("nameservice"), "tls://127.0.0.1:0") as ns:
        plus = served(namewire.Node("PlusServer",
                                    security=certs.security("PlusServer", policy=policy_file)))
        async with plus.serve(nameservice=ns, listen="tls://127.0.0.1:0", unix=False):
            caller = namewire.Node("Caller", security=certs.security("Caller"))
            rogue = namewire.Node("Rogue", security=certs.security("Rogue"))
            async with caller.serve(nameservice=ns, listen=None), \
                    rogue.serve(nameservice=ns, listen=None):
                assert await caller.rpc_call("PlusServer", "plus", 1, 2) == 3
                with caplog.at_level(logging.WARNING, logger="namewire.transport"):
                    for _ in range(3):
                        with pytest.raises(Forbidden) as refused:
                            await caller.rpc_call("PlusServer", "minus", 5, 2)
                assert refused.value.function == "minus" and refused.value.peer == "PlusServer"
                assert "identity 'Caller' may not call PlusServer.minus" in str(refused.value)
                # "*" allows no calls: a member with another certificate gets nothing either.
                with pytest.raises(Forbidden, match="identity 'Rogue' may not call PlusServer.plus"):
                    await rogue.rpc_call("PlusServer", "plus", 1, 2)
                # The refusals are logged, rate-limited: one record for the four.
                logged = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
                assert len(logged) == 1 and "'Caller'" in logged[0] and "minus" in logged[0]
                # The connection carries on.
                assert await caller.rpc_call("PlusServer", "plus", 2, 2) == 4


async def test_without_a_policy_file_nothing_changes(certs: Certs) -> None:
    async with nameservice(certs.security("nameservice"), "tls://127.0.0.1:0") as ns:
        other = served(namewire.Node("Other", security=certs.security("Rogue")))
        async with other.serve(nameservice=ns, listen="tls://127.0.0.1:0", unix=False):
            caller = namewire.Node("Caller", security=certs.security("Caller"))
            async with caller.serve(nameservice=ns, listen=None):
                assert await caller.rpc_call("Other", "minus", 5, 2) == 3


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[PlusServer\nregister = []", "is not TOML"),
        ('PlusServer = "Plus*"', "'PlusServer' must be a table"),
        ('[PlusServer]\nregister = "Plus*"', "register must be a list of non-empty strings"),
        ('[PlusServer]\nregistr = ["Plus*"]', "unknown key 'registr'"),
        ('[Caller]\ncall = ["plus"]', "call pattern 'plus' must be Service.function"),
    ],
)
def test_a_malformed_policy_file_is_refused_naming_the_file(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=problem) as refused:
        Security(policy=str(path))
    assert str(path) in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(ValueError, match="cannot read the policy file"):
        Security(policy=str(tmp_path / "missing.toml"))


def test_patterns_and_the_default(policy_file: str) -> None:
    policy = Policy.from_file(policy_file)
    assert policy.may_register("PlusServer", "PlusServer") and policy.may_register("PlusServer", "Plus2")
    assert not policy.may_register("PlusServer", "Other")
    assert not policy.may_register(None, "PlusServer")  # no certificate: "*", which allows nothing
    assert policy.may_call("Caller", "PlusServer", "plus")
    assert not policy.may_call("Caller", "PlusServer", "minus")
    assert not policy.may_call("Caller", "PlusServerX", "plus")
    assert Security.from_env({"NAMEWIRE_POLICY_FILE": policy_file}).rules is not None
    assert Security.from_env({}).rules is None


def test_the_command_line_refuses_a_malformed_policy_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text("[PlusServer]\ncall = 3\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NAMEWIRE_")}
    done = subprocess.run(
        [sys.executable, "-m", "namewire", "nameservice", "--listen", "tcp://127.0.0.1:0",
         "--policy", str(path)],
        check=False, capture_output=True, text=True, timeout=20, env=env,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(path) in lines[0] and "call must be a list" in lines[0]


async def test_a_group_member_answers_what_the_group_name_allows(
    certs: Certs, policy_file: str
) -> None:
    async with nameservice(certs.security("nameservice"), "tls://127.0.0.1:0") as ns:
        member = served(namewire.Node("PlusServer/1",
                                      security=certs.security("PlusServer", policy=policy_file)))
        member.group = "PlusServer"  # as `namewire run --workers N` sets it
        async with member.serve(nameservice=ns, listen="tls://127.0.0.1:0", unix=False):
            caller = namewire.Node("Caller", security=certs.security("Caller"))
            async with caller.serve(nameservice=ns, listen=None):
                assert await caller.rpc_call("PlusServer", "plus", 1, 2) == 3
                with pytest.raises(Forbidden, match=r"may not call PlusServer/1\.minus"):
                    await caller.rpc_call("PlusServer", "minus", 1, 2)

"""Run by the dashboard and top tests: calls Adder.plus in a loop, Adder.fail now and then, and
Relay.relay (a nested call to Adder), until killed."""

from __future__ import annotations

import asyncio
import sys

import namewire


async def main(nameservice: str) -> None:
    me = namewire.Node("Load")
    async with me.serve(nameservice=nameservice, listen=None):
        while True:
            try:
                for _ in range(20):
                    await me.rpc_call("Adder", "plus", 1, 2)
                try:
                    await me.rpc_call("Adder", "fail", "bad input")
                except namewire.RemoteError:
                    pass
                await me.rpc_call("Relay", "relay", "Adder", "plus", 1, 1)
            except (namewire.NameNotFound, namewire.PeerLost):
                pass
            await asyncio.sleep(0.02)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))

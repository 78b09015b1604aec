"""A group member for the registry contract: registers ``NAME`` in ``GROUP`` straight through the
`Registry` interface (no node), says so on stdout, and holds it until killed.

    python tests/apps/registry_member.py REGISTRY_URL NAME GROUP TTL
"""

import asyncio
import os
import sys

from namewire.registry import Registration, open_registry


async def main(url: str, name: str, group: str, ttl: float) -> None:
    registry = open_registry(url, node_name=name, ttl=ttl)
    await registry.start()
    await registry.register(Registration(name=name, group=group, pid=os.getpid(),
                                         functions=("plus",), host="test-host"))
    print("registered", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))

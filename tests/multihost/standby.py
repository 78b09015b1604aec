"""A standby for a name: claims NAME as soon as it is free and serves ``whoami`` from then on.

    standby.py --nameservice URL --listen tcp://ADDR:0 NAME

Prints ``{"took": wall-clock time}`` once it holds the name.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

import namewire


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nameservice", required=True)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--lease-ttl", type=float, default=3.0)
    parser.add_argument("name")
    args = parser.parse_args()
    while True:
        node = namewire.Node(args.name)
        node.function(lambda: {"name": node.name, "pid": os.getpid()}, name="whoami")
        try:
            async with node.serve(listen=args.listen, unix=False, nameservice=args.nameservice,
                                  lease_ttl=args.lease_ttl):
                sys.stdout.write(json.dumps({"took": time.time()}) + "\n")
                sys.stdout.flush()
                await asyncio.Event().wait()
        except (namewire.NameTaken, namewire.RegistryUnavailable):
            await asyncio.sleep(0.1)


if __name__ == "__main__":
    namewire.run(main())

"""send_msg to a carried name (a gateway's browser session) against its carrier's own name.

    .venv/bin/python bench/carried_send.py [--messages 20000] [--rounds 3]

One process: a name service, a carrier node that registers ``Carrier/1`` as carried, and a
sender. Each round sends ``--messages`` to ``Carrier`` and then to ``Carrier/1`` (which travel as
``{"to", "msg"}`` on the same route) while the carrier drains its mailbox. Read the ratio: the
targets run back to back in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import namewire  # noqa: E402
from namewire.nameservice import NameService  # noqa: E402
from namewire.registry import Registration  # noqa: E402


async def main(messages: int, rounds: int) -> None:
    async with NameService().serve("tcp://127.0.0.1:0") as ns:
        carrier, sender = namewire.Node("Carrier"), namewire.Node("Sender")
        async with carrier.serve(nameservice=ns.address), sender.serve(nameservice=ns.address):
            assert carrier.registry is not None
            await carrier.registry.register_carried(Registration(name="Carrier/1", via="Carrier"))

            async def drain() -> None:
                for _ in range(messages):
                    await carrier.get_msg()

            ratios = []
            for round_ in range(rounds):
                rates = {}
                for target in ("Carrier", "Carrier/1"):
                    await sender.send_msg(target, 0)  # route and look-up made before timing
                    await carrier.get_msg()
                    drained = asyncio.ensure_future(drain())
                    started = time.perf_counter()
                    for i in range(messages):
                        await sender.send_msg(target, i)
                    await drained
                    rates[target] = messages / (time.perf_counter() - started)
                ratios.append(rates["Carrier/1"] / rates["Carrier"])
                print(f"round {round_}: Carrier {rates['Carrier']:,.0f} msgs/s, Carrier/1 "
                      f"{rates['Carrier/1']:,.0f} msgs/s, ratio "
                      f"{ratios[-1]:.2f}")
            print(f"median ratio {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("namewire").setLevel(logging.ERROR)  # a full mailbox is the point here
    asyncio.run(main(args.messages, args.rounds))

"""A test service: calls, messages both ways, slow and crashing functions.

Started by the tests with ``namewire run tests/apps/worker.py --name NAME``.
"""

import asyncio
import logging
import os

import namewire

node = namewire.Node("Worker")
cancelled: list[int] = []


@node.function(idempotent=True)
def plus(a, b):
    return a + b


@node.function
def whoami():
    return {"name": node.name, "pid": os.getpid()}


@node.function
async def sleep_then(seconds, value):
    logging.getLogger("worker").info("sleep_then(%s) running", seconds)  # tests wait for it
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        cancelled.append(seconds)
        raise
    return value


@node.function
def cancelled_calls():
    return list(cancelled)


@node.function
def fail(message):
    raise ValueError(message)


@node.function
async def call_back(name, func, *args):
    """Call a function of ``name`` from here: calls by name in the other direction."""
    return await node.rpc_call(name, func, *args)


async def main(node):
    # Echo every message back to its sender, tagged with our name: messages both ways.
    while True:
        sender, msg = await node.get_msg()
        if msg == "stop":
            return
        await node.send_msg(sender, {"from": node.name, "echo": msg})

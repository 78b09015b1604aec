"""A service run as a group by the worker tests: ``namewire run tests/apps/group_member.py
--name Counter --workers 2``. Records the messages it receives, per sender, in arrival order."""

import asyncio
import os

import namewire

node = namewire.Node("Counter")
received: list[list[object]] = []


@node.function
def whoami():
    return {"name": node.name, "group": node.group, "pid": os.getpid()}


@node.function
def plus(a, b):
    return a + b


@node.function
async def slow(seconds):
    await asyncio.sleep(seconds)
    return node.name


@node.function
def messages():
    return list(received)


async def main(node):
    while True:
        sender, msg = await node.get_msg()
        received.append([sender, msg])

"""A service for the gateway tests: a function browsers call, and messages to browser sessions.

Started with ``namewire run tests/apps/web_service.py --name PlusServer``.
"""

import asyncio

import namewire
from namewire.gateway import send_to_browser

node = namewire.Node("PlusServer")


@node.function
def plus(a, b):
    return a + b


@node.function
def fail(text):
    raise ValueError(text)


@node.function
def secret():
    return "not for browsers"


@node.function
async def slow(seconds):
    await asyncio.sleep(seconds)
    return seconds


@node.function
async def notify(browser, msg):
    """Send ``msg`` to the browser session ``browser`` by its name, from this service."""
    await send_to_browser(node, browser, msg)
    return True


@node.function
async def tell(browser, msg):
    """Send ``msg`` to the browser session ``browser`` with a plain send_msg to its name."""
    await node.send_msg(browser, msg)
    return True


async def main(node):
    # A message from a browser that says where to answer gets an answer there, by its name.
    while True:
        _, msg = await node.get_msg()
        if isinstance(msg, dict) and "reply_to" in msg:
            await node.send_msg(msg["reply_to"], {"echo": msg.get("text")})

"""A test service for tests/observe: a fast function, a failing one, and a nested call.

Started with ``namewire run tests/apps/observed.py --name NAME [--metrics URL]``.
"""

import namewire

node = namewire.Node("Observed")


@node.function
def plus(a, b):
    return a + b


@node.function
def fail(message):
    raise ValueError(message)


@node.function
async def traceparent():
    return namewire.current_traceparent()


@node.function
async def relay(name, func, *args):
    """Call ``name.func(*args)`` from here: a nested call that inherits deadline and trace."""
    return {"here": namewire.current_traceparent(), "there": await node.rpc_call(name, func, *args)}

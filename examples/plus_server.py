"""PlusServer (luanet's example service, re-created): one remote function, ``plus(a, b)``.

Run it under a name service:  namewire nameservice &  namewire run examples/plus_server.py
"""

import namewire

node = namewire.Node("PlusServer")


@node.function(idempotent=True)
def plus(a, b):
    return a + b

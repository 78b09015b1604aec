"""The seed's Plus benchmark on rpyc: ``plus(1, 2)`` called in a loop by N threads.

    rpyc_plus.py server PORT
    rpyc_plus.py client PORT --callers N --seconds S [--warmup W]

The server is rpyc's `ThreadedServer` (a thread per connection, its usual deployment).  Each
client thread opens its own connection, looks the exposed method up once and then calls that
reference, so every counted call is one request and one reply (``conn.root.plus(...)`` written
out each time would add an attribute look-up round trip per call).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import rpyc
from rpyc.utils.server import ThreadedServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "clients"))
from _rpcload import emit, peer_parser, run_thread_callers


class PlusService(rpyc.Service):
    """The service: one exposed method, the sum of its two arguments."""

    def exposed_plus(self, a: int, b: int) -> int:
        return a + b


def serve(port: int) -> None:
    """Serves until killed."""
    server = ThreadedServer(
        PlusService,
        hostname="127.0.0.1",
        port=port,
        backlog=4096,
        protocol_config={"allow_public_attrs": False},
    )
    print(f"rpyc plus server on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    server.start()


def client(port: int, callers: int, seconds: float, warmup: float) -> dict[str, Any]:
    """Runs the load and returns the harness's result dict."""

    def connect() -> Any:
        conn = rpyc.connect("127.0.0.1", port, config={"sync_request_timeout": 60})
        plus = conn.root.plus
        return lambda: plus(1, 2)

    return run_thread_callers(connect, callers, seconds, warmup)


def main() -> None:
    parser = peer_parser(__doc__.splitlines()[0])
    args = parser.parse_args()
    if args.role == "server":
        serve(args.port)
    else:
        emit(client(args.port, args.callers, args.seconds, args.warmup))


if __name__ == "__main__":
    main()

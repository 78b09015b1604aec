"""The seed's Plus benchmark on Pyro5: ``plus(1, 2)`` called in a loop by N threads.

    pyro5_plus.py server PORT
    pyro5_plus.py client PORT --callers N --seconds S [--warmup W]

The server is Pyro5's default thread-pool server with the pool sized for the largest run (a
pooled worker serves one connection for its whole life, so 1000 callers need 1000 workers; the
default pool of 80 would refuse the rest).  The client gives each caller thread its own `Proxy`,
as Pyro5 requires, and uses Pyro5's default serializer (serpent).  The object is registered under
a fixed id, so the client addresses it directly by URI and no Pyro name server is involved.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import Pyro5.api
from Pyro5 import config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "clients"))
from _rpcload import emit, peer_parser, run_thread_callers

OBJECT_ID = "PlusServer"


@Pyro5.api.expose
class PlusServer:
    """The remote object: one method, the sum of its two arguments."""

    def plus(self, a: int, b: int) -> int:
        return a + b


def serve(port: int, pool: int) -> None:
    """Serves until killed."""
    config.THREADPOOL_SIZE = pool
    config.THREADPOOL_SIZE_MIN = min(pool, 16)
    daemon = Pyro5.api.Daemon(host="127.0.0.1", port=port)
    daemon.register(PlusServer(), objectId=OBJECT_ID)
    print(f"pyro5 plus server on 127.0.0.1:{port} (pool {pool})", file=sys.stderr, flush=True)
    daemon.requestLoop()


def client(port: int, callers: int, seconds: float, warmup: float) -> dict[str, Any]:
    """Runs the load and returns the harness's result dict."""
    uri = f"PYRO:{OBJECT_ID}@127.0.0.1:{port}"

    def connect() -> Any:
        proxy = Pyro5.api.Proxy(uri)
        proxy._pyroBind()
        plus = proxy.plus
        return lambda: plus(1, 2)

    return run_thread_callers(connect, callers, seconds, warmup)


def main() -> None:
    parser = peer_parser(__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=1100, help="server worker threads")
    args = parser.parse_args()
    if args.role == "server":
        serve(args.port, args.pool)
    else:
        result = client(args.port, args.callers, args.seconds, args.warmup)
        result["serializer"] = config.SERIALIZER
        emit(result)


if __name__ == "__main__":
    main()

"""Workers: independent interpreters (processes, or threads with their own loop) started by `fork`,
joined to their parent by `WorkerChannel`s that carry the `Channel` API across the boundary."""

from ._channel import WorkerChannel
from ._supervised import run_worker
from ._worker import StartMethod, Worker, fork

__all__ = ["StartMethod", "Worker", "WorkerChannel", "fork", "run_worker"]

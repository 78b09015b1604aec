"""Runtime toolkit: the loop entry point, light processes, timers, channels, async logging and file IO.

Usable with or without a `namewire.Node`. Private modules hold one idea each: ``_run`` (the entry
point), ``_spawn`` (light processes), ``_supervisor`` (restart policies), ``_timers``, ``_channel``,
``_context`` (node and process names for logging), ``_logging`` and ``_rotation`` (the asynchronous
logging pipeline); ``fs`` is the public asynchronous file IO module.
"""

from . import fs
from ._channel import Channel, select
from ._context import (
    current_node_name,
    current_process_name,
    reset_node_name,
    set_default_node_name,
    set_node_name,
)
from ._logging import ContextFilter, JsonFormatter, LogPipeline, configure_logging
from ._run import new_event_loop, run, stop_waiting
from ._spawn import Process, running_processes, spawn, stop_processes
from ._supervisor import Policy, Supervisor, SupervisorFailed
from ._timers import Ticker, Timer, call_later, every, sleep, sleep_until

__all__ = [
    "Channel",
    "ContextFilter",
    "JsonFormatter",
    "LogPipeline",
    "Policy",
    "Process",
    "Supervisor",
    "SupervisorFailed",
    "Ticker",
    "Timer",
    "call_later",
    "configure_logging",
    "current_node_name",
    "current_process_name",
    "every",
    "fs",
    "new_event_loop",
    "reset_node_name",
    "run",
    "running_processes",
    "select",
    "set_default_node_name",
    "set_node_name",
    "sleep",
    "sleep_until",
    "spawn",
    "stop_processes",
    "stop_waiting",
]

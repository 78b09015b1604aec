"""Runtime toolkit: the loop entry point, light processes, timers, channels, async logging and file IO.

Usable with or without a `namewire.Node`.
"""

from ._run import new_event_loop, run

__all__ = ["new_event_loop", "run"]

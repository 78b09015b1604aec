"""`Node`: a named service; connections, calls and the mailbox behind the four functions."""

from ._failures import FailureLog
from ._functions import Caller, RemoteFunction
from ._mailbox import Mailbox
from ._node import DEFAULT, DEFAULT_CALL_TIMEOUT, STATS_FUNCTION, Node
from ._startup import DEFAULT_REGISTRY_WAIT
from ._trace_context import current_traceparent, trace_context

__all__ = [
    "DEFAULT",
    "DEFAULT_CALL_TIMEOUT",
    "DEFAULT_REGISTRY_WAIT",
    "STATS_FUNCTION",
    "Caller",
    "FailureLog",
    "Mailbox",
    "Node",
    "RemoteFunction",
    "current_traceparent",
    "trace_context",
]

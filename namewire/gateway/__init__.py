"""Browsers reach the cluster by name: the WebSocket `Gateway`, what it lets through (`Policy`,
`Exposure`, `Limits`), and `send_to_browser` for services. The JS client it serves at
``/namewire.js`` is ``static/namewire.js``; the protocol is in docs/web.md."""

from ._gateway import Gateway, client_source, send_to_browser
from ._policy import CODES, BrowserError, Exposure, Limits, Policy

__all__ = ["CODES", "BrowserError", "Exposure", "Gateway", "Limits", "Policy", "client_source",
           "send_to_browser"]

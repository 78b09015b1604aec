"""Browsers reach the cluster by name: the WebSocket `Gateway`, what it lets through (`Policy`,
`Exposure`, `Limits`), `send_to_browser` for services, and tokens signed with the cluster secret
(`mint_token`, `secret_tokens`). The JS client it serves at
``/namewire.js`` is ``static/namewire.js``; the protocol is in docs/web.md."""

from ._gateway import Gateway, client_source, send_to_browser
from ._policy import CODES, BrowserError, Exposure, Limits, Policy
from ._tokens import mint_token, read_token, secret_tokens

__all__ = ["CODES", "BrowserError", "Exposure", "Gateway", "Limits", "Policy", "client_source",
           "mint_token", "read_token", "secret_tokens", "send_to_browser"]

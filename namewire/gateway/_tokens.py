"""Browser tokens signed with the cluster's shared secret: ``namewire gateway --auth secret``.

The secret itself never reaches a browser (it would make the browser a member of the cluster).
Whoever logs the user in (an app's own HTTP server, a namewire service) holds the secret and
hands the browser `mint_token(secret, user)`; the gateway checks the signature and the expiry
before the upgrade. A token is ``<claims>.<mac>``, both base64url: the claims are JSON
``{"sub": subject, "exp": unix time}``, the MAC is HMAC-SHA256 under a key derived from the
secret for this one use, so a token is no answer to the secret handshake of node connections.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable

__all__ = ["mint_token", "read_token", "secret_tokens"]

log = logging.getLogger("namewire.gateway")

_PURPOSE = b"namewire gateway browser token v1"


def _key(secret: bytes) -> bytes:
    return hmac.new(secret, _PURPOSE, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint_token(secret: bytes, subject: str, ttl: float = 3600.0, *,
               now: float | None = None) -> str:
    """A token for ``subject`` (a user name, say) valid for ``ttl`` seconds."""
    if ttl <= 0:
        raise ValueError(f"a token's ttl must be positive, not {ttl}")
    issued = time.time() if now is None else now
    claims = json.dumps({"sub": subject, "exp": int(issued + ttl)}, separators=(",", ":"))
    body = _b64(claims.encode())
    return f"{body}.{_b64(hmac.new(_key(secret), body.encode(), hashlib.sha256).digest())}"


def read_token(secret: bytes, token: str, *, now: float | None = None) -> str:
    """The subject of a valid ``token``; ValueError saying why it is not one."""
    body, dot, mac = token.partition(".")
    if not dot or not body or not mac:
        raise ValueError("not a namewire token (<claims>.<signature>)")
    expected = hmac.new(_key(secret), body.encode(), hashlib.sha256).digest()
    try:
        signature = _unb64(mac)
        claims = json.loads(_unb64(body))
        subject, expires = str(claims["sub"]), float(claims["exp"])
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise ValueError("not a namewire token (unreadable claims or signature)") from None
    if not hmac.compare_digest(signature, expected):
        raise ValueError(f"token of {subject!r}: bad signature (another secret?)")
    if expires <= (time.time() if now is None else now):
        raise ValueError(f"token of {subject!r} expired at {time.ctime(expires)}")
    return subject


def secret_tokens(secret: bytes) -> Callable[[str | None, str | None], bool]:
    """The gateway's token check for tokens minted with ``secret`` (`Policy.authenticate`)."""

    def check(token: str | None, origin: str | None) -> bool:
        if token is None:
            return False
        try:
            subject = read_token(secret, token)
        except ValueError as exc:
            log.info("refused a browser token from origin %r: %s", origin, exc)
            return False
        log.debug("accepted the token of %r from origin %r", subject, origin)
        return True

    return check

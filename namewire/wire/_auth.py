"""`SecretAuthenticator`: the handshake's challenge-response on a shared cluster secret (sans-I/O).

Three legs, each side proving that it knows the secret without sending it:

1. connecting side -> hello ``auth = {"m": "hmac-sha256", "n": Nc}`` (a fresh 16-byte nonce);
2. accepting side -> hello ``auth = {"m": ..., "n": Ns, "p": HMAC(secret, "server" Nc Ns C S)}``;
3. connecting side -> a second hello ``auth = {"p": HMAC(secret, "client" Nc Ns C S)}``.

C and S are the two hello names, so a proof cannot be moved to a connection between other names;
the role labels keep one side's proof from being reflected back as the other's. Each side picks its
nonce afresh for every connection, so a recorded handshake proves nothing when replayed: the
replayed proof was made for a nonce that will not come again. Values travel as hex text, so both
codecs (msgpack and JSON) carry them. The connecting side sends nothing after its hello until the
accepting side has proved itself (`RpcConnection` holds it back), and the accepting side reads no
call before the third leg has arrived.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from ..errors import AuthError
from ._envelopes import Hello

__all__ = ["MIN_SECRET_BYTES", "SecretAuthenticator"]

METHOD = "hmac-sha256"
MIN_SECRET_BYTES = 16
_NONCE_BYTES = 16
_LABEL = b"namewire-auth-v1"


class SecretAuthenticator:
    """One side of a connection authenticated by ``secret`` (at least 16 bytes).

    ``name`` is this side's hello name; ``accepting`` says which side it is. Make one per
    connection: it holds that connection's nonces.
    """

    __slots__ = ("_accepting", "_name", "_nonce", "_peer_name", "_peer_nonce", "_secret",
                 "identity")

    def __init__(self, secret: bytes, *, name: str, accepting: bool) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(
                f"a shared secret needs at least {MIN_SECRET_BYTES} bytes, not {len(secret)}"
            )
        self._secret = secret
        self._name = name
        self._accepting = accepting
        self._nonce = secrets.token_bytes(_NONCE_BYTES)
        self._peer_nonce: bytes | None = None
        self._peer_name = ""
        self.identity: str | None = None  # "secret" once the peer has proved it holds it

    @property
    def needs_proof(self) -> bool:
        """The accepting side waits for the third leg before the connection opens."""
        return self._accepting

    @property
    def holds_output(self) -> bool:
        """The connecting side sends nothing after its hello until the peer has proved itself."""
        return not self._accepting

    def hello_info(self) -> dict[str, Any]:
        auth: dict[str, Any] = {"m": METHOD, "n": self._nonce.hex()}
        if self._accepting:
            auth["p"] = self._mac(b"server").hex()
        return {"auth": auth}

    def verify(self, hello: Hello) -> None:
        auth = _auth_entry(hello, ("m", "n") if self._accepting else ("m", "n", "p"))
        if auth["m"] != METHOD:
            raise AuthError(f"unknown authentication method {auth['m']!r} (this side: {METHOD})",
                            peer=hello.name)
        self._peer_nonce = _hex(auth["n"], hello.name, _NONCE_BYTES)
        self._peer_name = hello.name
        if not self._accepting:
            self._check(b"server", auth["p"], hello.name)

    def proof(self) -> dict[str, Any] | None:
        """The third leg (connecting side, after `verify`); None on the accepting side."""
        if self._accepting:
            return None
        return {"auth": {"p": self._mac(b"client").hex()}}

    def verify_proof(self, hello: Hello) -> None:
        """Check the third leg (accepting side)."""
        auth = _auth_entry(hello, ("p",))
        self._check(b"client", auth["p"], hello.name)

    # -- internals ------------------------------------------------------------------------------

    def _check(self, role: bytes, given: Any, peer: str) -> None:
        mac = _hex(given, peer, hashlib.sha256().digest_size)
        if not hmac.compare_digest(mac, self._mac(role)):
            raise AuthError("wrong shared secret (the proof does not match)", peer=peer)
        self.identity = "secret"

    def _mac(self, role: bytes) -> bytes:
        assert self._peer_nonce is not None, "the peer's hello comes first"
        if self._accepting:
            client_nonce, server_nonce = self._peer_nonce, self._nonce
            client, server = self._peer_name, self._name
        else:
            client_nonce, server_nonce = self._nonce, self._peer_nonce
            client, server = self._name, self._peer_name
        message = b"\0".join(
            (_LABEL, role, client_nonce, server_nonce, client.encode(), server.encode())
        )
        return hmac.new(self._secret, message, hashlib.sha256).digest()


def _auth_entry(hello: Hello, keys: tuple[str, ...]) -> dict[str, Any]:
    auth = hello.info.get("auth")
    if not isinstance(auth, dict):
        raise AuthError("sent no credentials; this side requires the cluster's shared secret "
                        "(--secret-file or $NAMEWIRE_SECRET_FILE)", peer=hello.name)
    missing = [k for k in keys if not isinstance(auth.get(k), str)]
    if missing:
        raise AuthError(f"malformed credentials (missing {', '.join(missing)})", peer=hello.name)
    return auth


def _hex(value: str, peer: str, size: int) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b""
    if len(raw) != size:
        raise AuthError(f"malformed credentials ({len(value)} characters where {2 * size} hex "
                        "digits belong)", peer=peer)
    return raw

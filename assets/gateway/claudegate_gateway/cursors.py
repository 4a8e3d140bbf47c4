"""List cursors the gateway hands out: encrypted and authenticated, bound to one client.

A cursor the gateway makes itself (the scan position of a batch list that
could not be filled within its bound, the files ``next_page``) holds an
upstream position: an object id or upstream's page token, which may name
*another* client's object. Signing alone would show it; so a cursor is
sealed with authenticated encryption:

* keys: derived from the keystore's pepper (the server secret, through its
  HMAC), one for the cipher and one for the tag, so a new pepper voids every
  cursor and no cursor key is ever stored;
* cipher: SHAKE-256 over (key, random 96-bit nonce) as the keystream, XORed
  with the payload (a keyed extendable-output function is a pseudo-random
  generator: the cursor shows nothing of its payload but its length);
* tag: HMAC-SHA256 (128 bits kept) over the purpose, the client's name, the
  nonce and the ciphertext: encrypt-then-MAC, with the client and purpose as
  associated data, so a cursor that was altered, made up, or issued to
  another client (or for another list) does not open.

Why not AES-GCM or ChaCha20-Poly1305: the gateway image ships aiohttp and
pyyaml only (``requirements.lock``), and the standard library has no AEAD.
Adding ``cryptography`` (and cffi) to the image for this is a bigger change
than the construction above, which is the generic encrypt-then-MAC
composition (IND-CCA2 from an IND-CPA cipher and a strongly unforgeable MAC)
over two standard-library primitives, with independent keys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Callable

__all__ = ["CursorBox"]

_NONCE = 12
_TAG = 16
_VERSION = b"claudegate-cursor-1"


def _lp(data: bytes) -> bytes:
    """Length-prefixed, so (purpose, client) pairs cannot run into each other."""
    return len(data).to_bytes(4, "big") + data


class CursorBox:
    """Seal and open cursors; ``mac`` is the keystore's keyed digest (HMAC under the pepper)."""

    def __init__(self, mac: Callable[[str], bytes]) -> None:
        root = mac("list-cursor-key")
        self._enc = hmac.new(root, _VERSION + b":enc", hashlib.sha256).digest()
        self._auth = hmac.new(root, _VERSION + b":mac", hashlib.sha256).digest()

    def _tag(self, purpose: str, client: str, nonce: bytes, body: bytes) -> bytes:
        msg = _lp(purpose.encode()) + _lp(client.encode()) + nonce + body
        return hmac.new(self._auth, msg, hashlib.sha256).digest()[:_TAG]

    def _stream(self, nonce: bytes, n: int, data: bytes) -> bytes:
        pad = hashlib.shake_256(_VERSION + self._enc + nonce).digest(n)
        return (int.from_bytes(data, "big") ^ int.from_bytes(pad, "big")).to_bytes(n, "big")

    def seal(self, purpose: str, client: str, payload: bytes) -> str:
        """An opaque token of ``[A-Za-z0-9_-]`` for ``payload``, openable only by this client for this purpose."""
        nonce = secrets.token_bytes(_NONCE)
        body = self._stream(nonce, len(payload), payload) if payload else b""
        raw = nonce + body + self._tag(purpose, client, nonce, body)
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    def open(self, purpose: str, client: str, token: str) -> bytes | None:
        """The payload, or None for anything this gateway did not seal for this client and purpose."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            return None
        # One spelling per cursor: the decoder skips stray characters and spare bits.
        if len(raw) < _NONCE + _TAG or base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=") != token:
            return None
        nonce, body, tag = raw[:_NONCE], raw[_NONCE:-_TAG], raw[-_TAG:]
        if not hmac.compare_digest(tag, self._tag(purpose, client, nonce, body)):
            return None
        return self._stream(nonce, len(body), body) if body else b""

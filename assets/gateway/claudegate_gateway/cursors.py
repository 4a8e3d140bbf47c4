"""List cursors the gateway hands out: encrypted and authenticated, bound to one client.

A cursor the gateway makes itself (the files ``next_page``) holds a
position in the caller's own list. Lists are answered from the gateway's
index now, so it names only the caller's object; it is still sealed, so
that no cursor ever shows a position in clear and none can be made up or
carried to another client or list (when lists were filled from upstream's
pages it could name *another* client's object). Sealed with an AEAD from
``cryptography`` (a well-kept library, not a construction of our own):

* key: HKDF-SHA256 from the keystore's pepper (through its keyed digest, so
  the pepper itself never reaches this module) with a versioned ``info``;
  a new pepper voids every cursor and no cursor key is ever stored;
* cipher: AES-256-GCM with a random 96-bit nonce per cursor. A client could
  make the gateway seal many cursors, but GCM's random-nonce bound (2^32
  seals per key) is far beyond what rpm limits allow in a pepper's life;
* associated data: the format version, the purpose (which list) and the
  client's name, length-prefixed, so a cursor that was altered, made up, or
  issued to another client (or for another list) does not open.

Wire format (URL-safe base64, unpadded, one spelling only):
``version byte || nonce (12) || ciphertext || tag (16)``.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["CursorBox"]

_FORMAT = 2  # 1 was the standard-library encrypt-then-MAC box; its cursors no longer open
_NONCE = 12
_TAG = 16
_INFO = b"claudegate list cursor v2 aes-256-gcm"


def _lp(data: bytes) -> bytes:
    """Length-prefixed, so (purpose, client) pairs cannot run into each other."""
    return len(data).to_bytes(4, "big") + data


def _aad(purpose: str, client: str) -> bytes:
    return bytes([_FORMAT]) + _lp(purpose.encode()) + _lp(client.encode())


class CursorBox:
    """Seal and open cursors; ``mac`` is the keystore's keyed digest (HMAC under the pepper)."""

    def __init__(self, mac: Callable[[str], bytes]) -> None:
        root = mac("list-cursor-key")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(root)
        self._aead = AESGCM(key)

    def seal(self, purpose: str, client: str, payload: bytes) -> str:
        """An opaque token of ``[A-Za-z0-9_-]`` for ``payload``, openable only by this client for this purpose."""
        nonce = secrets.token_bytes(_NONCE)
        raw = bytes([_FORMAT]) + nonce + self._aead.encrypt(nonce, payload, _aad(purpose, client))
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    def open(self, purpose: str, client: str, token: str) -> bytes | None:
        """The payload, or None for anything this gateway did not seal for this client and purpose."""
        if not token.isascii():
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            return None
        # One spelling per cursor: the decoder skips stray characters and spare bits.
        if len(raw) < 1 + _NONCE + _TAG or base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=") != token:
            return None
        if raw[0] != _FORMAT:
            return None
        nonce, sealed = raw[1 : 1 + _NONCE], raw[1 + _NONCE :]
        try:
            return self._aead.decrypt(nonce, sealed, _aad(purpose, client))
        except InvalidTag:
            return None

"""The discovery cipher (spec §4.5): the cluster secret is the AES key as is.

Affiliate data is AES-GCM with a random nonce in front, so the server learns
nothing. Endpoints are AES-ECB per block on purpose: the same endpoint reported
by different nodes must encrypt to the same bytes so the server can de-duplicate
it. Both must stay bit-exact with the Go client.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .constants import AES_BLOCK_SIZE, AES_KEY_SIZES, GCM_NONCE_SIZE


class DecryptError(ValueError):
    """A blob that is not ours: wrong key, truncated, tampered or badly framed."""


def key_from_secret(secret: str | bytes) -> bytes:
    """Standard base64, no KDF; the length picks AES-128/192/256."""
    try:
        key = base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"cluster secret is not valid standard base64: {e}") from None
    if len(key) not in AES_KEY_SIZES:
        raise ValueError(f"cluster secret decodes to {len(key)} bytes; AES needs 16, 24 or 32")
    return key


class ClusterCipher:
    """Encrypts and decrypts the affiliate data blob and the endpoint blobs of one cluster."""

    def __init__(self, key: bytes) -> None:
        if len(key) not in AES_KEY_SIZES:
            raise ValueError(f"AES key must be 16, 24 or 32 bytes, got {len(key)}")
        self._gcm = AESGCM(key)
        self._ecb = Cipher(algorithms.AES(key), modes.ECB())

    @classmethod
    def from_secret(cls, secret: str | bytes) -> ClusterCipher:
        return cls(key_from_secret(secret))

    # --- affiliate data: nonce(12) || AES-GCM(plaintext) || tag(16) ---

    def encrypt_data(self, plaintext: bytes, nonce: bytes | None = None) -> bytes:
        """``nonce`` is for test vectors only; real payloads always get a fresh random one."""
        if nonce is None:
            nonce = os.urandom(GCM_NONCE_SIZE)
        elif len(nonce) != GCM_NONCE_SIZE:
            raise ValueError(f"GCM nonce must be {GCM_NONCE_SIZE} bytes")
        return nonce + self._gcm.encrypt(nonce, plaintext, None)

    def decrypt_data(self, blob: bytes) -> bytes:
        if len(blob) < GCM_NONCE_SIZE:
            raise DecryptError(f"affiliate data too short ({len(blob)} bytes)")
        try:
            return self._gcm.decrypt(blob[:GCM_NONCE_SIZE], blob[GCM_NONCE_SIZE:], None)
        except (InvalidTag, ValueError) as e:  # ValueError: shorter than the tag
            raise DecryptError("affiliate data does not decrypt with the cluster key") from e

    # --- endpoints: [len] || pb, zero padded to 16, each block AES-ECB ---

    def encrypt_endpoint(self, pb: bytes) -> bytes:
        if len(pb) > 255:
            raise ValueError("endpoint protobuf longer than the one-byte length frame allows")
        framed = bytes([len(pb)]) + pb
        framed += b"\0" * (-len(framed) % AES_BLOCK_SIZE)
        enc = self._ecb.encryptor()
        return enc.update(framed) + enc.finalize()

    def decrypt_endpoint(self, blob: bytes) -> bytes:
        if not blob or len(blob) % AES_BLOCK_SIZE:
            raise DecryptError(f"endpoint blob length {len(blob)} is not a positive multiple of 16")
        dec = self._ecb.decryptor()
        framed = dec.update(blob) + dec.finalize()
        n = framed[0]
        if n > len(framed) - 1:
            raise DecryptError(f"endpoint frame length {n} exceeds the blob")
        return framed[1 : 1 + n]

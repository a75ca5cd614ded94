"""Session operations: what a diversified session key can do, whoever holds it.

A session key is SK = diversify_levels(MK, [cardF(, cityF), R]) with R the user card's challenge.
``SessionOps.mac`` takes the message *unpadded* and applies ISO/IEC 9797-1 padding method 2
itself (the SAM's ``80FA 05`` takes padded data, so the PSAM backend pads before sending).
The MAC is 4 bytes: SM4 CBC-MAC (MAC algorithm 1) or, for 3DES, the retail MAC (algorithm 3).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from healthcard_apdu.crypto import (
    BlockCipher,
    CryptoError,
    ecb_decrypt,
    ecb_encrypt,
    mac_iso9797_alg1,
    mac_iso9797_alg3,
    xor_fold,
)
from healthcard_apdu.security.errors import SecurityModuleError

__all__ = [
    "MAC_LENGTH",
    "DecryptingSession",
    "SessionOps",
    "SoftwareSession",
    "external_auth_cryptogram",
    "software_mac",
]

MAC_LENGTH = 4
AUTH_PLAINTEXT_LENGTH = 8


@runtime_checkable
class SessionOps(Protocol):
    """A session key held by some security module: ECB encryption and a 4-byte MAC."""

    @property
    def cipher(self) -> BlockCipher: ...

    def encrypt(self, data: bytes) -> bytes:
        """ECB-encrypt whole blocks (like SAM ``80FA 00``); no padding is added."""
        ...

    def mac(self, data: bytes, iv: bytes | None = None) -> bytes:
        """4-byte MAC over ``data`` (unpadded; method-2 padding is applied), IV default zeros."""
        ...


class DecryptingSession(SessionOps, Protocol):
    """A session that can also decrypt (software sessions; used to check protected commands)."""

    def decrypt(self, data: bytes) -> bytes: ...


def software_mac(cipher: BlockCipher, key: bytes, data: bytes, iv: bytes | None = None) -> bytes:
    """The session MAC in software: SM4 CBC-MAC or 3DES retail MAC, left 4 bytes."""
    try:
        if cipher is BlockCipher.SM4:
            full = mac_iso9797_alg1(BlockCipher.SM4, key, data, iv)
        else:
            full = mac_iso9797_alg3(key, data, iv)
    except CryptoError as exc:
        raise SecurityModuleError(f"session MAC: {exc}") from None
    return full[:MAC_LENGTH]


class SoftwareSession:
    """A session key in host memory. Its repr never shows the key."""

    __slots__ = ("_cipher", "_key")

    def __init__(self, cipher: BlockCipher, key: bytes) -> None:
        if len(key) != 16:
            raise SecurityModuleError(f"session key must be 16 bytes, got {len(key)}")
        self._cipher = cipher
        self._key = bytes(key)

    @property
    def cipher(self) -> BlockCipher:
        return self._cipher

    def encrypt(self, data: bytes) -> bytes:
        try:
            return ecb_encrypt(self._cipher, self._key, data)
        except CryptoError as exc:
            raise SecurityModuleError(f"session encrypt: {exc}") from None

    def decrypt(self, data: bytes) -> bytes:
        try:
            return ecb_decrypt(self._cipher, self._key, data)
        except CryptoError as exc:
            raise SecurityModuleError(f"session decrypt: {exc}") from None

    def mac(self, data: bytes, iv: bytes | None = None) -> bytes:
        return software_mac(self._cipher, self._key, data, iv)

    def __repr__(self) -> str:
        return f"SoftwareSession({self._cipher.name}, key=<redacted>)"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("session keys cannot be pickled")


def external_auth_cryptogram(session: SessionOps, a: bytes) -> bytes:
    """The 8-byte cryptogram of the health-card external authentication (docs/cos.md §5).

    SM4: xor_fold(ECB_SK(A || 00*8)).  3DES: ECB_SK(A) (one 8-byte block, no fold).
    """
    if len(a) != AUTH_PLAINTEXT_LENGTH:
        raise SecurityModuleError(f"external auth plaintext A must be 8 bytes, got {len(a)}")
    if session.cipher is BlockCipher.SM4:
        return xor_fold(session.encrypt(bytes(a) + bytes(8)))
    return session.encrypt(bytes(a))

"""Software security module: master keys in host memory, from a KeySet or an encrypted key file."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, NoReturn

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from healthcard_apdu.crypto import (
    BlockCipher,
    CryptoError,
    diversify,
    diversify_levels,
    sm2_public_key,
    sm2_sign_digest,
)
from healthcard_apdu.security.errors import SecurityModuleError, UnsupportedOperation
from healthcard_apdu.security.keyset import KeySet
from healthcard_apdu.security.keyspec import CardFactors, KeySpec
from healthcard_apdu.security.module import (
    Point,
    SecurityModule,
    check_challenge,
    check_platform_cipher_use,
)
from healthcard_apdu.security.session import SoftwareSession

__all__ = ["SoftwareDataCipher", "SoftwareSecurityModule"]

log = logging.getLogger(__name__)


class SoftwareDataCipher:
    """An SM4 platform data key in host memory, ECB over whole blocks.

    The cipher contexts are built once and reused (an ECB context keeps no state between
    whole blocks), under a lock so that threads may share the object. Its repr never shows the
    key and it cannot be pickled.
    """

    __slots__ = ("_decryptor", "_encryptor", "_lock", "role")

    def __init__(self, key: bytes, role: str) -> None:
        if len(key) != 16:
            raise SecurityModuleError(f"platform key {role} must be 16 bytes, got {len(key)}")
        algorithm = algorithms.SM4(bytes(key))
        self._encryptor = Cipher(algorithm, modes.ECB()).encryptor()
        self._decryptor = Cipher(algorithm, modes.ECB()).decryptor()
        self._lock = threading.Lock()
        self.role = role

    @property
    def cipher(self) -> BlockCipher:
        return BlockCipher.SM4

    def _blocks(self, data: bytes, action: str) -> bytes:
        if not data or len(data) % 16:
            raise SecurityModuleError(
                f"{self.role} {action}: {len(data)} bytes are not whole 16-byte blocks"
            )
        return bytes(data)

    def encrypt(self, data: bytes) -> bytes:
        blocks = self._blocks(data, "encrypt")
        with self._lock:
            return self._encryptor.update(blocks)

    def decrypt(self, data: bytes) -> bytes:
        blocks = self._blocks(data, "decrypt")
        with self._lock:
            return self._decryptor.update(blocks)

    def __repr__(self) -> str:
        return f"SoftwareDataCipher({self.role})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("platform data keys cannot be pickled")

    def __getstate__(self) -> Any:
        raise TypeError("platform data keys cannot be pickled")


class SoftwareSecurityModule(SecurityModule):
    """All SAM work in software. Fast (no I/O): the personalization and test backend."""

    def __init__(self, keyset: KeySet, *, name: str = "software") -> None:
        self._keyset = keyset
        self.name = name

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], passphrase: str | bytes, *, name: str = "software"
    ) -> SoftwareSecurityModule:
        return cls(KeySet.load(path, passphrase), name=name)

    @property
    def algorithm(self) -> BlockCipher:
        return self._keyset.algorithm

    def _derive(self, key: KeySpec, factors: list[bytes]) -> bytes:
        master = self._keyset.key(key.role, key.version)
        try:
            return diversify_levels(self._keyset.algorithm, master.value, factors)
        except CryptoError as exc:
            raise SecurityModuleError(f"diversify {key.role}: {exc}") from None

    def session(self, key: KeySpec, factors: CardFactors, challenge: bytes) -> SoftwareSession:
        levels = [*factors.for_key(key), check_challenge(challenge)]
        log.debug("software session for %s (P1=%02X P2=%02X)", key.role, key.sam_p1, key.sam_p2)
        return SoftwareSession(self._keyset.algorithm, self._derive(key, levels))

    def derive_card_key(self, key: KeySpec, factors: CardFactors) -> bytes:
        log.debug("software card key for %s", key.role)
        return self._derive(key, factors.for_key(key))

    def key_check_values(self) -> dict[str, str]:
        return self._keyset.key_check_values()

    def sign_digest(self, digest: bytes) -> bytes:
        if self._keyset.sm2_private is None:
            raise UnsupportedOperation(f"security module {self.name}: key set has no SM2 key")
        if len(digest) != 32:
            raise SecurityModuleError(f"SM2 digest must be 32 bytes, got {len(digest)}")
        # RFC 6979 nonces: the same record always gets the same signature (pure perso plans).
        return sm2_sign_digest(self._keyset.sm2_private, digest, deterministic=True)

    def certificate(self) -> bytes:
        if self._keyset.certificate is None:
            raise UnsupportedOperation(f"security module {self.name}: key set has no certificate")
        return self._keyset.certificate

    def data_cipher(
        self, role: str, *, factor: bytes | None = None, version: int | None = None
    ) -> SoftwareDataCipher:
        check_platform_cipher_use(role, factor)
        master = self._keyset.key(role, version)
        if self._keyset.algorithm is not BlockCipher.SM4:
            raise UnsupportedOperation(f"platform key {role} must be SM4, the key set is 3DES")
        value = master.value
        if factor is not None:
            try:
                value = diversify(BlockCipher.SM4, value, factor)
            except CryptoError as exc:
                raise SecurityModuleError(f"diversify {role}: {exc}") from None
        log.debug("software data cipher for %s", role)
        return SoftwareDataCipher(value, role)

    def sign_digest_as(self, role: str, digest: bytes) -> bytes:
        if len(digest) != 32:
            raise SecurityModuleError(f"SM2 digest must be 32 bytes, got {len(digest)}")
        return sm2_sign_digest(self._keyset.sm2_key(role), digest)

    def public_key_of(self, role: str) -> Point:
        return sm2_public_key(self._keyset.sm2_key(role))

    def close(self) -> None:
        log.debug("software security module %s closed", self.name)

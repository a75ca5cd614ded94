"""Software security module: master keys in host memory, from a KeySet or an encrypted key file."""

from __future__ import annotations

import logging
import os

from healthcard_apdu.crypto import BlockCipher, CryptoError, diversify_levels, sm2_sign_digest
from healthcard_apdu.security.errors import SecurityModuleError, UnsupportedOperation
from healthcard_apdu.security.keyset import KeySet
from healthcard_apdu.security.keyspec import CardFactors, KeySpec
from healthcard_apdu.security.module import SecurityModule, check_challenge
from healthcard_apdu.security.session import SoftwareSession

__all__ = ["SoftwareSecurityModule"]

log = logging.getLogger(__name__)


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

    def close(self) -> None:
        log.debug("software security module %s closed", self.name)

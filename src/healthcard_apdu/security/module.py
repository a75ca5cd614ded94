"""The security-module interface (the SAM role) of the software, PKCS#11 and PSAM backends."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType

from healthcard_apdu.crypto import BlockCipher, sm3
from healthcard_apdu.security.errors import SecurityModuleError
from healthcard_apdu.security.keyspec import CardFactors, KeySpec
from healthcard_apdu.security.session import SessionOps, external_auth_cryptogram

__all__ = ["SecurityModule", "check_challenge"]

CHALLENGE_LENGTH = 8


class SecurityModule(ABC):
    """Holds master keys and does the SAM's work for one or many user cards.

    * :meth:`session` sets up SK = diversify_levels(MK, card(, city), challenge);
    * :meth:`external_auth_data` gives the 17 bytes of ``00 82 00 ref 11``;
    * :meth:`derive_card_key` gives a card-level key for WRITE KEY (personalization only);
    * :meth:`sign_digest`, :meth:`certificate`, :meth:`sm3` sign EE/ED records
      (docs/reference/healthcard-layout.md §3.9).
    """

    name: str = "security-module"

    @property
    @abstractmethod
    def algorithm(self) -> BlockCipher:
        """Block cipher of the master keys (SM4 or 3DES)."""

    @abstractmethod
    def session(self, key: KeySpec, factors: CardFactors, challenge: bytes) -> SessionOps:
        """A session keyed by SK = diversify_levels(MK[key], factors + [challenge])."""

    def external_auth_data(
        self, key: KeySpec, factors: CardFactors, challenge: bytes, a: bytes
    ) -> bytes:
        """``crypt(8) || A(8) || version(1)`` for EXTERNAL AUTHENTICATE (docs/cos.md §5)."""
        session = self.session(key, factors, challenge)
        return external_auth_cryptogram(session, a) + bytes(a) + bytes((key.version,))

    @abstractmethod
    def derive_card_key(self, key: KeySpec, factors: CardFactors) -> bytes:
        """The card-level key K_card = diversify_levels(MK[key], factors) (16 bytes)."""

    @abstractmethod
    def key_check_values(self) -> dict[str, str]:
        """Role -> KCV (hex of E(K, zero block)[:3]) of every master key held."""

    @abstractmethod
    def sign_digest(self, digest: bytes) -> bytes:
        """SM2 signature r||s (64 bytes) over a 32-byte digest e (see security.signing)."""

    @abstractmethod
    def certificate(self) -> bytes:
        """The 190-byte SAM certificate (format in docs/keys.md)."""

    def sm3(self, data: bytes) -> bytes:
        """SM3 digest of ``data`` (hashing needs no secret; the PSAM backend uses the SAM)."""
        return sm3(data)

    def close(self) -> None:  # noqa: B027 - optional hook, default does nothing
        """Release the backend (sessions, tokens, channels). Idempotent."""

    def __enter__(self) -> SecurityModule:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, algorithm={self.algorithm.name})"


def check_challenge(challenge: bytes) -> bytes:
    """The card's challenge as an 8-byte diversification factor."""
    if len(challenge) != CHALLENGE_LENGTH:
        raise SecurityModuleError(f"card challenge must be 8 bytes, got {len(challenge)}")
    return bytes(challenge)

"""Block ciphers used by FMCOS-like COSes: DES / 3DES (2- and 3-key EDE) and SM4.

Every call builds a fresh ``cryptography`` cipher context; nothing keeps keys in memory.
DES keys are always expanded to 24 bytes before they reach ``TripleDES`` (the short
forms are deprecated in ``cryptography`` and would warn).
"""

from __future__ import annotations

import enum

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, CipherAlgorithm, algorithms, modes

from .errors import CryptoError

__all__ = [
    "BlockCipher",
    "cbc_decrypt",
    "cbc_encrypt",
    "des3_key24",
    "ecb_decrypt",
    "ecb_encrypt",
]


class BlockCipher(enum.Enum):
    """Block cipher family; TDES covers single DES (8-byte key) and 2/3-key 3DES."""

    TDES = "3des"
    SM4 = "sm4"

    @property
    def block_size(self) -> int:
        """Block size in bytes: 8 for DES/3DES, 16 for SM4."""
        return 8 if self is BlockCipher.TDES else 16


def des3_key24(key: bytes) -> bytes:
    """Expand a DES key to the 24-byte 3-key form: K -> K|K|K, K1|K2 -> K1|K2|K1."""
    if len(key) == 8:
        return key * 3
    if len(key) == 16:
        return key + key[:8]
    if len(key) == 24:
        return bytes(key)
    raise CryptoError(f"DES/3DES key must be 8, 16 or 24 bytes, got {len(key)}")


def _algorithm(cipher: BlockCipher, key: bytes) -> CipherAlgorithm:
    if cipher is BlockCipher.TDES:
        return TripleDES(des3_key24(key))
    if len(key) != 16:
        raise CryptoError(f"SM4 key must be 16 bytes, got {len(key)}")
    return algorithms.SM4(bytes(key))


def _check_blocks(cipher: BlockCipher, data: bytes) -> None:
    if len(data) % cipher.block_size:
        raise CryptoError(
            f"{cipher.name} data length {len(data)} is not a multiple of {cipher.block_size}"
        )


def _check_iv(cipher: BlockCipher, iv: bytes) -> None:
    if len(iv) != cipher.block_size:
        raise CryptoError(f"{cipher.name} IV must be {cipher.block_size} bytes, got {len(iv)}")


def ecb_encrypt(cipher: BlockCipher, key: bytes, data: bytes) -> bytes:
    """Encrypt whole blocks in ECB mode (no padding)."""
    _check_blocks(cipher, data)
    enc = Cipher(_algorithm(cipher, key), modes.ECB()).encryptor()
    return enc.update(data) + enc.finalize()


def ecb_decrypt(cipher: BlockCipher, key: bytes, data: bytes) -> bytes:
    """Decrypt whole blocks in ECB mode (no padding)."""
    _check_blocks(cipher, data)
    dec = Cipher(_algorithm(cipher, key), modes.ECB()).decryptor()
    return dec.update(data) + dec.finalize()


def cbc_encrypt(cipher: BlockCipher, key: bytes, data: bytes, iv: bytes) -> bytes:
    """Encrypt whole blocks in CBC mode (no padding)."""
    _check_blocks(cipher, data)
    _check_iv(cipher, iv)
    enc = Cipher(_algorithm(cipher, key), modes.CBC(bytes(iv))).encryptor()
    return enc.update(data) + enc.finalize()


def cbc_decrypt(cipher: BlockCipher, key: bytes, data: bytes, iv: bytes) -> bytes:
    """Decrypt whole blocks in CBC mode (no padding)."""
    _check_blocks(cipher, data)
    _check_iv(cipher, iv)
    dec = Cipher(_algorithm(cipher, key), modes.CBC(bytes(iv))).decryptor()
    return dec.update(data) + dec.finalize()

"""FMCOS line encryption (线路加密): ECB over ``LD || data || [80 00..]`` [FM-UM 11.4]."""

from __future__ import annotations

from .ciphers import BlockCipher, ecb_decrypt, ecb_encrypt
from .padding import pad_line_encryption, unpad_line_encryption

__all__ = ["line_decrypt", "line_encrypt"]


def line_encrypt(cipher: BlockCipher, key: bytes, data: bytes) -> bytes:
    """Encrypt ``data`` for a line-encrypted command (also WRITE KEY ciphertext)."""
    return ecb_encrypt(cipher, key, pad_line_encryption(data, cipher.block_size))


def line_decrypt(cipher: BlockCipher, key: bytes, data: bytes) -> bytes:
    """Decrypt line-encrypted data and cut the plaintext with LD; CryptoError if malformed."""
    plain = ecb_decrypt(cipher, key, data)
    return unpad_line_encryption(plain, block_size=cipher.block_size)

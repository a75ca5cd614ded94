"""Key diversification (密钥分散), key folding and key check values."""

from __future__ import annotations

from collections.abc import Sequence

from .ciphers import BlockCipher, ecb_encrypt
from .errors import CryptoError

__all__ = [
    "DIVERSIFICATION_FACTOR_LENGTH",
    "diversify",
    "diversify_levels",
    "key_check_value",
    "xor_fold",
]

DIVERSIFICATION_FACTOR_LENGTH = 8


def _invert(data: bytes) -> bytes:
    return bytes(b ^ 0xFF for b in data)


def diversify(cipher: BlockCipher, master_key: bytes, factor: bytes) -> bytes:
    """One level of diversification; returns a 16-byte key.

    D = the rightmost 8 bytes of ``factor``.
    TDES: E(MK, D) || E(MK, ~D) (PBOC practice).  SM4: SM4(MK, D || ~D) (one block).
    """
    if len(factor) < DIVERSIFICATION_FACTOR_LENGTH:
        raise CryptoError(f"diversification factor must be at least 8 bytes, got {len(factor)}")
    d = bytes(factor[-DIVERSIFICATION_FACTOR_LENGTH:])
    # Both ciphers encrypt D || ~D in ECB: two DES blocks or one SM4 block.
    return ecb_encrypt(cipher, master_key, d + _invert(d))


def diversify_levels(cipher: BlockCipher, master_key: bytes, factors: Sequence[bytes]) -> bytes:
    """Apply :func:`diversify` once per factor, in order (一级/二级分散...)."""
    if not factors:
        raise CryptoError("diversify_levels needs at least one factor")
    key = bytes(master_key)
    for factor in factors:
        key = diversify(cipher, key, factor)
    return key


def xor_fold(block: bytes) -> bytes:
    """Left half XOR right half (16 -> 8 bytes), e.g. K_L ^ K_R for TAC / PIN-reload keys."""
    if not block or len(block) % 2:
        raise CryptoError(f"xor_fold needs a non-empty even length, got {len(block)}")
    half = len(block) // 2
    return bytes(a ^ b for a, b in zip(block[:half], block[half:], strict=True))


def key_check_value(cipher: BlockCipher, key: bytes) -> bytes:
    """KCV: first 3 bytes of the encryption of one all-zero block."""
    return ecb_encrypt(cipher, key, bytes(cipher.block_size))[:3]

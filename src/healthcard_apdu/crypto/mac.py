"""CBC-MACs of ISO/IEC 9797-1 and the FMCOS line-protection MAC built on them."""

from __future__ import annotations

from .ciphers import BlockCipher, cbc_encrypt, ecb_decrypt, ecb_encrypt
from .errors import CryptoError
from .padding import pad_iso9797_m2

__all__ = [
    "FMCOS_MAC_LENGTH",
    "challenge_iv",
    "fmcos_mac",
    "mac_iso9797_alg1",
    "mac_iso9797_alg3",
]

FMCOS_MAC_LENGTH = 4


def challenge_iv(challenge: bytes, block_size: int) -> bytes:
    """IV from a card challenge: the challenge followed by zeros up to one block.

    ``R(4) || 00000000`` for DES [FM-UM 11.3]; for SM4 the zero fill to 16 bytes is the
    common convention but must be confirmed per COS (docs/reference/cos-crypto.md §1.10).
    """
    if not 1 <= len(challenge) <= block_size:
        raise CryptoError(f"challenge must be 1..{block_size} bytes, got {len(challenge)}")
    return bytes(challenge) + bytes(block_size - len(challenge))


def _mac_input(data: bytes, block_size: int, pad: bool) -> bytes:
    if pad:
        return pad_iso9797_m2(data, block_size)
    if not data or len(data) % block_size:
        raise CryptoError(
            f"unpadded MAC input must be a non-empty multiple of {block_size} bytes, "
            f"got {len(data)}"
        )
    return bytes(data)


def _iv_or_zero(iv: bytes | None, block_size: int) -> bytes:
    if iv is None:
        return bytes(block_size)
    if len(iv) != block_size:
        raise CryptoError(f"MAC IV must be {block_size} bytes, got {len(iv)}")
    return bytes(iv)


def mac_iso9797_alg1(
    cipher: BlockCipher,
    key: bytes,
    data: bytes,
    iv: bytes | None = None,
    *,
    pad: bool = True,
) -> bytes:
    """ISO/IEC 9797-1 MAC algorithm 1 (plain CBC-MAC); returns the whole last block.

    With TDES an 8-byte key is single DES and a 16/24-byte key is 3DES on every block.
    ``pad`` applies padding method 2; with ``pad=False`` the data must be block-aligned.
    """
    bs = cipher.block_size
    chain = cbc_encrypt(cipher, key, _mac_input(data, bs, pad), _iv_or_zero(iv, bs))
    return chain[-bs:]


def mac_iso9797_alg3(
    key16: bytes,
    data: bytes,
    iv: bytes | None = None,
    *,
    pad: bool = True,
) -> bytes:
    """ISO/IEC 9797-1 MAC algorithm 3 / ANSI X9.19 retail MAC with DES; 8 bytes.

    Single DES with K_L over all blocks, then D_KR and E_KL on the last output.
    """
    if len(key16) != 16:
        raise CryptoError(f"retail MAC key must be 16 bytes, got {len(key16)}")
    k_left, k_right = key16[:8], key16[8:]
    chain = cbc_encrypt(BlockCipher.TDES, k_left, _mac_input(data, 8, pad), _iv_or_zero(iv, 8))
    last = ecb_decrypt(BlockCipher.TDES, k_right, chain[-8:])
    return ecb_encrypt(BlockCipher.TDES, k_left, last)


def fmcos_mac(cipher: BlockCipher, key: bytes, data: bytes, iv: bytes) -> bytes:
    """4-byte FMCOS line-protection MAC over ``data`` (padding method 2 is applied here).

    TDES: 8-byte key -> MAC algorithm 1 with single DES, 16-byte key -> MAC algorithm 3.
    SM4: MAC algorithm 1 with SM4 (16-byte IV; see :func:`challenge_iv`).
    """
    if cipher is BlockCipher.TDES:
        if len(key) == 8:
            full = mac_iso9797_alg1(BlockCipher.TDES, key, data, iv)
        elif len(key) == 16:
            full = mac_iso9797_alg3(key, data, iv)
        else:
            raise CryptoError(f"FMCOS DES MAC key must be 8 or 16 bytes, got {len(key)}")
    else:
        full = mac_iso9797_alg1(BlockCipher.SM4, key, data, iv)
    return full[:FMCOS_MAC_LENGTH]

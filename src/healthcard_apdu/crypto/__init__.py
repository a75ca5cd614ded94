"""Crypto layer: pure primitives for FMCOS / PBOC / health-card secure messaging (no I/O).

DES/3DES and SM4 block operations, ISO/IEC 9797-1 padding and MACs, the FMCOS line
protection MAC and line-encryption padding, key diversification, SM3 and SM2.
See docs/crypto.md for conventions and vector sources.
"""

from __future__ import annotations

from .ciphers import (
    BlockCipher,
    cbc_decrypt,
    cbc_encrypt,
    des3_key24,
    ecb_decrypt,
    ecb_encrypt,
)
from .diversify import (
    DIVERSIFICATION_FACTOR_LENGTH,
    diversify,
    diversify_levels,
    key_check_value,
    xor_fold,
)
from .errors import CryptoError
from .line import line_decrypt, line_encrypt
from .mac import (
    FMCOS_MAC_LENGTH,
    challenge_iv,
    fmcos_mac,
    mac_iso9797_alg1,
    mac_iso9797_alg3,
)
from .padding import (
    pad_iso9797_m2,
    pad_line_encryption,
    unpad_iso9797_m2,
    unpad_line_encryption,
)
from .sm2 import (
    DEFAULT_SM2_USER_ID,
    SM2_GBT32918_TEST_CURVE,
    SM2P256V1,
    Sm2Curve,
    rfc6979_nonces,
    sm2_backend,
    sm2_decode_public,
    sm2_encode_public,
    sm2_generate_private,
    sm2_public_key,
    sm2_sign,
    sm2_sign_digest,
    sm2_verify,
    sm2_verify_digest,
    sm2_za,
)
from .sm3 import SM3_DIGEST_SIZE, sm3

__all__ = [
    "DEFAULT_SM2_USER_ID",
    "DIVERSIFICATION_FACTOR_LENGTH",
    "FMCOS_MAC_LENGTH",
    "SM2P256V1",
    "SM2_GBT32918_TEST_CURVE",
    "SM3_DIGEST_SIZE",
    "BlockCipher",
    "CryptoError",
    "Sm2Curve",
    "cbc_decrypt",
    "cbc_encrypt",
    "challenge_iv",
    "des3_key24",
    "diversify",
    "diversify_levels",
    "ecb_decrypt",
    "ecb_encrypt",
    "fmcos_mac",
    "key_check_value",
    "line_decrypt",
    "line_encrypt",
    "mac_iso9797_alg1",
    "mac_iso9797_alg3",
    "pad_iso9797_m2",
    "pad_line_encryption",
    "rfc6979_nonces",
    "sm2_backend",
    "sm2_decode_public",
    "sm2_encode_public",
    "sm2_generate_private",
    "sm2_public_key",
    "sm2_sign",
    "sm2_sign_digest",
    "sm2_verify",
    "sm2_verify_digest",
    "sm2_za",
    "sm3",
    "unpad_iso9797_m2",
    "unpad_line_encryption",
    "xor_fold",
]

"""Key diversification, xor fold and KCV."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from healthcard_apdu.crypto import (
    BlockCipher,
    CryptoError,
    diversify,
    diversify_levels,
    ecb_encrypt,
    key_check_value,
    xor_fold,
)

T = BlockCipher.TDES
S = BlockCipher.SM4
keys16 = st.binary(min_size=16, max_size=16)
factors = st.binary(min_size=8, max_size=16)


def _invert(data: bytes) -> bytes:
    return bytes(b ^ 0xFF for b in data)


@given(mk=keys16, factor=factors)
def test_tdes_diversify_is_left_and_right_halves(mk: bytes, factor: bytes) -> None:
    d = factor[-8:]
    expected = ecb_encrypt(T, mk, d) + ecb_encrypt(T, mk, _invert(d))
    assert diversify(T, mk, factor) == expected


@given(mk=keys16, factor=factors)
def test_sm4_diversify_is_one_block_of_d_and_not_d(mk: bytes, factor: bytes) -> None:
    d = factor[-8:]
    assert diversify(S, mk, factor) == ecb_encrypt(S, mk, d + _invert(d))


@given(
    cipher=st.sampled_from(list(BlockCipher)),
    mk=keys16,
    levels=st.lists(factors, min_size=1, max_size=3),
)
def test_levels_equal_repeated_diversify(
    cipher: BlockCipher, mk: bytes, levels: list[bytes]
) -> None:
    key = mk
    for factor in levels:
        key = diversify(cipher, key, factor)
    assert diversify_levels(cipher, mk, levels) == key
    assert len(key) == 16


def test_long_factor_uses_rightmost_8_bytes() -> None:
    mk = bytes(range(16))
    d = bytes.fromhex("0000000012345678")
    for cipher in BlockCipher:
        assert diversify(cipher, mk, b"\xaa" * 8 + d) == diversify(cipher, mk, d)
        assert diversify(cipher, mk, d) != diversify(cipher, mk, b"\xaa" * 8)


def test_diversify_errors() -> None:
    with pytest.raises(CryptoError, match="at least 8"):
        diversify(T, bytes(16), bytes(7))
    with pytest.raises(CryptoError, match="SM4 key"):
        diversify(S, bytes(8), bytes(8))
    with pytest.raises(CryptoError, match="at least one factor"):
        diversify_levels(T, bytes(16), [])


@given(left=st.binary(min_size=8, max_size=8), right=st.binary(min_size=8, max_size=8))
def test_xor_fold(left: bytes, right: bytes) -> None:
    assert xor_fold(left + right) == bytes(a ^ b for a, b in zip(left, right, strict=True))


def test_xor_fold_example_and_errors() -> None:
    assert xor_fold(bytes.fromhex("0F0F0F0F0F0F0F0FF0F0F0F0F0F0F0F1")) == bytes.fromhex(
        "FFFFFFFFFFFFFFFE"
    )
    for bad in (b"", bytes(15)):
        with pytest.raises(CryptoError):
            xor_fold(bad)


@pytest.mark.parametrize("cipher", list(BlockCipher))
def test_kcv_is_three_bytes_of_zero_block_encryption(cipher: BlockCipher) -> None:
    key = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    kcv = key_check_value(cipher, key)
    assert len(kcv) == 3
    assert kcv == ecb_encrypt(cipher, key, bytes(cipher.block_size))[:3]

"""ISO 9797-1 MAC algorithms 1 and 3 and the FMCOS line-protection MAC."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from healthcard_apdu.crypto import (
    BlockCipher,
    CryptoError,
    challenge_iv,
    ecb_encrypt,
    fmcos_mac,
    mac_iso9797_alg1,
    mac_iso9797_alg3,
)

T = BlockCipher.TDES
S = BlockCipher.SM4


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _pad80(data: bytes, bs: int) -> bytes:
    data = data + b"\x80"
    return data + bytes(-len(data) % bs)


def _chain(cipher: BlockCipher, key: bytes, blocks: bytes, iv: bytes) -> bytes:
    """Reference CBC-MAC, one ECB call per block."""
    bs = cipher.block_size
    state = iv
    for i in range(0, len(blocks), bs):
        state = ecb_encrypt(cipher, key, _xor(state, blocks[i : i + bs]))
    return state


@given(
    cipher=st.sampled_from(list(BlockCipher)),
    key=st.binary(min_size=16, max_size=16),
    data=st.binary(max_size=50),
    iv=st.binary(min_size=16, max_size=16),
)
def test_alg1_is_cbc_mac_over_method2_padding(
    cipher: BlockCipher, key: bytes, data: bytes, iv: bytes
) -> None:
    bs = cipher.block_size
    expected = _chain(cipher, key, _pad80(data, bs), iv[:bs])
    assert mac_iso9797_alg1(cipher, key, data, iv[:bs]) == expected


@given(key=st.binary(min_size=8, max_size=8), data=st.binary(max_size=40))
def test_alg1_des_key8_is_single_des(key: bytes, data: bytes) -> None:
    assert mac_iso9797_alg1(T, key, data) == mac_iso9797_alg1(T, key * 2, data)


@given(
    key=st.binary(min_size=16, max_size=16),
    data=st.binary(max_size=50),
    iv=st.binary(min_size=8, max_size=8),
)
def test_alg3_is_des_chain_then_3des_on_last_block(key: bytes, data: bytes, iv: bytes) -> None:
    blocks = _pad80(data, 8)
    head, last = blocks[:-8], blocks[-8:]
    state = _chain(T, key[:8], head, iv) if head else iv
    expected = ecb_encrypt(T, key, _xor(state, last))  # 2-key 3DES EDE on the last block
    assert mac_iso9797_alg3(key, data, iv) == expected


@given(half=st.binary(min_size=8, max_size=8), data=st.binary(max_size=40))
def test_alg3_with_equal_halves_is_single_des_alg1(half: bytes, data: bytes) -> None:
    assert mac_iso9797_alg3(half + half, data) == mac_iso9797_alg1(T, half, data)


def test_default_iv_is_zero() -> None:
    key = bytes(range(16))
    assert mac_iso9797_alg1(S, key, b"abc") == mac_iso9797_alg1(S, key, b"abc", bytes(16))
    assert mac_iso9797_alg3(key, b"abc") == mac_iso9797_alg3(key, b"abc", bytes(8))


def test_pad_false_needs_whole_blocks() -> None:
    key = bytes(range(16))
    block = bytes(range(8))
    assert mac_iso9797_alg1(T, key, block, pad=False) == ecb_encrypt(T, key, block)
    for bad in (b"", bytes(7), bytes(9)):
        with pytest.raises(CryptoError, match="multiple of 8"):
            mac_iso9797_alg1(T, key, bad, pad=False)
        with pytest.raises(CryptoError, match="multiple of 8"):
            mac_iso9797_alg3(key, bad, pad=False)


def test_iv_and_key_lengths_are_checked() -> None:
    with pytest.raises(CryptoError, match="IV must be 8"):
        mac_iso9797_alg1(T, bytes(8), b"", bytes(16))
    with pytest.raises(CryptoError, match="IV must be 16"):
        mac_iso9797_alg1(S, bytes(16), b"", bytes(8))
    for length in (8, 24):
        with pytest.raises(CryptoError, match="16 bytes"):
            mac_iso9797_alg3(bytes(length), b"")


@given(
    key=st.binary(min_size=16, max_size=16),
    data=st.binary(max_size=40),
    challenge=st.binary(min_size=4, max_size=8),
)
def test_fmcos_mac_picks_algorithm_by_key(key: bytes, data: bytes, challenge: bytes) -> None:
    iv8 = challenge_iv(challenge, 8)
    assert fmcos_mac(T, key[:8], data, iv8) == mac_iso9797_alg1(T, key[:8], data, iv8)[:4]
    assert fmcos_mac(T, key, data, iv8) == mac_iso9797_alg3(key, data, iv8)[:4]
    iv16 = challenge_iv(challenge, 16)
    assert fmcos_mac(S, key, data, iv16) == mac_iso9797_alg1(S, key, data, iv16)[:4]


def test_fmcos_mac_rejects_other_des_key_lengths() -> None:
    with pytest.raises(CryptoError, match="8 or 16"):
        fmcos_mac(T, bytes(24), b"", bytes(8))
    with pytest.raises(CryptoError, match="IV must be 8"):
        fmcos_mac(T, bytes(8), b"", bytes(4))


def test_challenge_iv() -> None:
    assert challenge_iv(bytes.fromhex("4C45BAB9"), 8) == bytes.fromhex("4C45BAB900000000")
    assert challenge_iv(bytes(range(1, 9)), 8) == bytes(range(1, 9))
    assert challenge_iv(bytes(range(1, 9)), 16) == bytes(range(1, 9)) + bytes(8)
    for bad, bs in ((b"", 8), (bytes(9), 8), (bytes(17), 16)):
        with pytest.raises(CryptoError, match="challenge"):
            challenge_iv(bad, bs)

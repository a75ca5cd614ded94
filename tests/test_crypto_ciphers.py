"""Block cipher wrappers: key handling, modes, warnings, errors."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import healthcard_apdu
from healthcard_apdu.crypto import (
    BlockCipher,
    CryptoError,
    cbc_decrypt,
    cbc_encrypt,
    des3_key24,
    ecb_decrypt,
    ecb_encrypt,
)

T = BlockCipher.TDES
S = BlockCipher.SM4

des_keys = st.binary(min_size=8, max_size=8)
blocks8 = st.integers(min_value=0, max_value=6).flatmap(
    lambda n: st.binary(min_size=8 * n, max_size=8 * n)
)


def test_block_sizes() -> None:
    assert T.block_size == 8
    assert S.block_size == 16
    assert BlockCipher("3des") is T
    assert BlockCipher("sm4") is S


def test_des3_key24_forms() -> None:
    k1, k2, k3 = bytes(range(8)), bytes(range(8, 16)), bytes(range(16, 24))
    assert des3_key24(k1) == k1 + k1 + k1
    assert des3_key24(k1 + k2) == k1 + k2 + k1
    assert des3_key24(k1 + k2 + k3) == k1 + k2 + k3


@pytest.mark.parametrize("length", [0, 7, 9, 15, 17, 23, 25, 32])
def test_des3_key24_rejects_other_lengths(length: int) -> None:
    with pytest.raises(CryptoError, match=str(length)):
        des3_key24(bytes(length))


@given(key=des_keys, data=blocks8)
def test_single_des_equals_3des_with_kkk(key: bytes, data: bytes) -> None:
    assert ecb_encrypt(T, key, data) == ecb_encrypt(T, key * 3, data)
    assert ecb_encrypt(T, key, data) == ecb_encrypt(T, key + key, data)


@given(k1=des_keys, k2=des_keys, data=blocks8)
def test_two_key_3des_equals_k1_k2_k1(k1: bytes, k2: bytes, data: bytes) -> None:
    assert ecb_encrypt(T, k1 + k2, data) == ecb_encrypt(T, k1 + k2 + k1, data)


@given(
    cipher=st.sampled_from(list(BlockCipher)),
    key=st.binary(min_size=16, max_size=16),
    nblocks=st.integers(min_value=0, max_value=5),
    seed=st.binary(min_size=80, max_size=80),
)
def test_ecb_and_cbc_round_trip(cipher: BlockCipher, key: bytes, nblocks: int, seed: bytes) -> None:
    data = seed[: nblocks * cipher.block_size]
    iv = seed[-cipher.block_size :]
    assert ecb_decrypt(cipher, key, ecb_encrypt(cipher, key, data)) == data
    assert cbc_decrypt(cipher, key, cbc_encrypt(cipher, key, data, iv), iv) == data


def test_cbc_chains_blocks() -> None:
    key = bytes(range(16))
    data = bytes(32)
    iv = bytes(range(16))
    out = cbc_encrypt(S, key, data, iv)
    first = ecb_encrypt(S, key, iv)
    assert out[:16] == first
    assert out[16:] == ecb_encrypt(S, key, first)  # second block: E(0 XOR C1)


def test_ecb_is_blockwise() -> None:
    key = bytes.fromhex("0123456789ABCDEF")
    a, b = bytes(range(8)), bytes(range(8, 16))
    assert ecb_encrypt(T, key, a + b) == ecb_encrypt(T, key, a) + ecb_encrypt(T, key, b)


@pytest.mark.parametrize("cipher", list(BlockCipher))
def test_unaligned_data_is_rejected(cipher: BlockCipher) -> None:
    key = bytes(16)
    with pytest.raises(CryptoError, match="multiple"):
        ecb_encrypt(cipher, key, bytes(cipher.block_size + 1))
    with pytest.raises(CryptoError, match="multiple"):
        ecb_decrypt(cipher, key, bytes(3))
    with pytest.raises(CryptoError, match="IV"):
        cbc_encrypt(cipher, key, bytes(cipher.block_size), bytes(cipher.block_size - 1))


@pytest.mark.parametrize("length", [8, 24, 15, 17, 32])
def test_sm4_key_length(length: int) -> None:
    with pytest.raises(CryptoError, match="SM4 key must be 16"):
        ecb_encrypt(S, bytes(length), bytes(16))


def test_error_messages_do_not_contain_key_material() -> None:
    key = bytes.fromhex("A1B2C3D4E5F60718293A4B5C6D7E8F90AB")  # 17 bytes: invalid for both
    for cipher in BlockCipher:
        with pytest.raises(CryptoError) as info:
            ecb_encrypt(cipher, key, bytes(16))
        text = str(info.value).lower()
        assert key.hex() not in text
        assert key[:4].hex() not in text


def test_tdes_emits_no_warnings_in_process() -> None:
    data = bytes(16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for key in (bytes(range(8)), bytes(range(16)), bytes(range(24))):
            ecb_encrypt(T, key, data)
            cbc_decrypt(T, key, data, bytes(8))
    assert caught == []


def test_tdes_import_and_use_under_warnings_error() -> None:
    src = Path(healthcard_apdu.__file__).resolve().parents[1]
    code = (
        "import warnings\n"
        "warnings.simplefilter('error')\n"
        "from healthcard_apdu.crypto import BlockCipher, ecb_encrypt, mac_iso9797_alg3\n"
        "for n in (8, 16, 24):\n"
        "    ecb_encrypt(BlockCipher.TDES, bytes(range(n)), bytes(8))\n"
        "mac_iso9797_alg3(bytes(range(16)), b'abc')\n"
        "print('ok')\n"
    )
    env = dict(os.environ, PYTHONPATH=str(src))
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
    assert result.stderr == ""

"""Padding rules: ISO 9797-1 method 2 (MAC) and FMCOS line encryption (LD, pad if needed)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from healthcard_apdu.crypto import (
    CryptoError,
    pad_iso9797_m2,
    pad_line_encryption,
    unpad_iso9797_m2,
    unpad_line_encryption,
)

block_sizes = st.sampled_from([8, 16])


def test_m2_examples() -> None:
    assert pad_iso9797_m2(b"", 8) == bytes.fromhex("8000000000000000")
    assert pad_iso9797_m2(bytes(7), 8) == bytes(7) + b"\x80"
    assert pad_iso9797_m2(bytes(8), 8) == bytes(8) + bytes.fromhex("8000000000000000")
    assert pad_iso9797_m2(b"\x01" * 15, 16) == b"\x01" * 15 + b"\x80"
    assert len(pad_iso9797_m2(bytes(16), 16)) == 32


@given(data=st.binary(max_size=70), bs=block_sizes)
def test_m2_round_trip(data: bytes, bs: int) -> None:
    padded = pad_iso9797_m2(data, bs)
    assert len(padded) % bs == 0
    assert 1 <= len(padded) - len(data) <= bs
    assert padded.startswith(data)
    assert padded[len(data)] == 0x80
    assert unpad_iso9797_m2(padded) == data
    assert unpad_iso9797_m2(padded, block_size=bs) == data


@given(
    data=st.binary(max_size=40),
    bs=block_sizes,
    tail=st.integers(min_value=1, max_value=255).filter(lambda b: b != 0x80),
)
def test_m2_unpad_rejects_last_non_zero_byte_other_than_80(data: bytes, bs: int, tail: int) -> None:
    padded = bytearray(pad_iso9797_m2(data, bs))
    padded[-1] = tail
    with pytest.raises(CryptoError, match="80 marker"):
        unpad_iso9797_m2(bytes(padded), block_size=bs)


@given(data=st.binary(max_size=40).map(lambda d: d.rstrip(b"\x00\x80") + b"\x01"))
def test_m2_unpad_rejects_missing_marker(data: bytes) -> None:
    with pytest.raises(CryptoError, match="80 marker"):
        unpad_iso9797_m2(data)
    with pytest.raises(CryptoError):
        unpad_iso9797_m2(data + bytes(3))


def test_m2_unpad_rejects_bad_layouts() -> None:
    with pytest.raises(CryptoError):
        unpad_iso9797_m2(b"")
    with pytest.raises(CryptoError):
        unpad_iso9797_m2(bytes(16))
    # Padding longer than a block.
    with pytest.raises(CryptoError):
        unpad_iso9797_m2(b"\x80" + bytes(15), block_size=8)
    # Not a whole number of blocks.
    with pytest.raises(CryptoError):
        unpad_iso9797_m2(b"\x01\x80", block_size=8)
    # The same 16 bytes are fine as one SM4 block.
    assert unpad_iso9797_m2(b"\x80" + bytes(15), block_size=16) == b""


def test_line_encryption_examples() -> None:
    # FMCOS WRITE KEY example: LD=0D, 13 bytes -> 14 -> 80 00 added.
    data = bytes.fromhex("F9F0F0AAFF1122334455667788")
    assert pad_line_encryption(data, 8) == bytes.fromhex("0DF9F0F0AAFF11223344556677888000")
    # LD || data already aligned: nothing is added (unlike method 2).
    assert pad_line_encryption(bytes(15), 16) == b"\x0f" + bytes(15)
    assert pad_line_encryption(bytes(7), 8) == b"\x07" + bytes(7)
    assert pad_line_encryption(b"", 8) == bytes.fromhex("0080000000000000")


@given(data=st.binary(max_size=255), bs=block_sizes)
def test_line_encryption_round_trip(data: bytes, bs: int) -> None:
    padded = pad_line_encryption(data, bs)
    assert len(padded) % bs == 0
    assert padded[0] == len(data)
    assert padded[1 : 1 + len(data)] == data
    assert len(padded) - len(data) - 1 < bs
    assert unpad_line_encryption(padded) == data
    assert unpad_line_encryption(padded, block_size=bs) == data


def test_line_encryption_rejects_long_data() -> None:
    with pytest.raises(CryptoError, match="256"):
        pad_line_encryption(bytes(256), 8)


@given(data=st.binary(min_size=1, max_size=60), bs=block_sizes, delta=st.integers(1, 40))
def test_line_unpad_rejects_ld_beyond_data(data: bytes, bs: int, delta: int) -> None:
    padded = bytearray(pad_line_encryption(data, bs))
    ld = len(padded) - 1 + delta
    if ld > 0xFF:
        return
    padded[0] = ld
    with pytest.raises(CryptoError, match="LD"):
        unpad_line_encryption(bytes(padded), block_size=bs)


@given(data=st.binary(max_size=60), bs=block_sizes, junk=st.integers(1, 255))
def test_line_unpad_rejects_bad_padding(data: bytes, bs: int, junk: int) -> None:
    padded = bytearray(pad_line_encryption(data, bs))
    pad_start = 1 + len(data)
    if pad_start == len(padded):
        return  # aligned: no padding to corrupt
    index = len(padded) - 1 if len(padded) - pad_start > 1 else pad_start
    if padded[index] == junk:
        junk ^= 0x01
    padded[index] = junk
    with pytest.raises(CryptoError):
        unpad_line_encryption(bytes(padded), block_size=bs)


def test_line_unpad_rejects_bad_layouts() -> None:
    with pytest.raises(CryptoError, match="empty"):
        unpad_line_encryption(b"")
    # Extra padding block where none was needed.
    with pytest.raises(CryptoError):
        unpad_line_encryption(b"\x07" + bytes(7) + b"\x80" + bytes(7), block_size=8)
    # Unaligned input.
    with pytest.raises(CryptoError):
        unpad_line_encryption(b"\x02\x01\x02", block_size=8)
    # Padding of a full block (would be 16 bytes for bs 8).
    with pytest.raises(CryptoError):
        unpad_line_encryption(b"\x00\x80" + bytes(14), block_size=8)
    assert unpad_line_encryption(b"\x00\x80" + bytes(14), block_size=16) == b""


@pytest.mark.parametrize("bs", [0, -1, 256])
def test_block_size_validation(bs: int) -> None:
    with pytest.raises(CryptoError, match="block_size"):
        pad_iso9797_m2(b"", bs)
    with pytest.raises(CryptoError, match="block_size"):
        pad_line_encryption(b"", bs)

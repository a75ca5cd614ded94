"""SM2 keys, signatures and encodings; point arithmetic against a naive affine reference."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthcard_apdu.crypto import (
    DEFAULT_SM2_USER_ID,
    SM2_GBT32918_TEST_CURVE,
    SM2P256V1,
    CryptoError,
    Sm2Curve,
    sm2_decode_public,
    sm2_encode_public,
    sm2_generate_private,
    sm2_public_key,
    sm2_sign,
    sm2_sign_digest,
    sm2_verify,
    sm2_verify_digest,
    sm2_za,
    sm3,
)

N = SM2P256V1.n
private_keys = st.integers(min_value=1, max_value=N - 2)
curves = st.sampled_from([SM2P256V1, SM2_GBT32918_TEST_CURVE])


def _affine_mul(k: int, curve: Sm2Curve) -> tuple[int, int] | None:
    """Textbook affine double-and-add, independent of the library's Jacobian code."""
    p = curve.p

    def add(a: tuple[int, int] | None, b: tuple[int, int] | None) -> tuple[int, int] | None:
        if a is None:
            return b
        if b is None:
            return a
        if a[0] == b[0] and (a[1] + b[1]) % p == 0:
            return None
        if a == b:
            lam = (3 * a[0] * a[0] + curve.a) * pow(2 * a[1], -1, p) % p
        else:
            lam = (b[1] - a[1]) * pow(b[0] - a[0], -1, p) % p
        x = (lam * lam - a[0] - b[0]) % p
        return (x, (lam * (a[0] - x) - a[1]) % p)

    result: tuple[int, int] | None = None
    addend: tuple[int, int] | None = (curve.gx, curve.gy)
    while k:
        if k & 1:
            result = add(result, addend)
        addend = add(addend, addend)
        k >>= 1
    return result


@settings(max_examples=25, deadline=None)
@given(curve=curves, d=st.integers(min_value=1, max_value=2**256))
def test_public_key_matches_affine_reference(curve: Sm2Curve, d: int) -> None:
    d = d % (curve.n - 2) + 1
    assert sm2_public_key(d, curve) == _affine_mul(d, curve)


@pytest.mark.parametrize("d", [1, 2, 15, 16, 17, 255, 256, N - 2])
def test_public_key_edge_scalars(d: int) -> None:
    assert sm2_public_key(d) == _affine_mul(d, SM2P256V1)


@settings(max_examples=25, deadline=None)
@given(d=private_keys, message=st.binary(max_size=64), user_id=st.binary(max_size=32))
def test_sign_verify_round_trip_and_tampering(d: int, message: bytes, user_id: bytes) -> None:
    public = sm2_public_key(d)
    signature = sm2_sign(d, message, user_id)
    assert len(signature) == 64
    assert sm2_verify(public, message, signature, user_id)
    assert not sm2_verify(public, message + b"\x00", signature, user_id)
    assert not sm2_verify(public, message, signature, user_id + b"x")
    flipped = bytearray(signature)
    flipped[len(message) % 64] ^= 0x01
    assert not sm2_verify(public, message, bytes(flipped), user_id)
    other = sm2_public_key(d % (N - 3) + 1)
    assert not sm2_verify(other, message, signature, user_id)


def test_random_nonces_give_different_valid_signatures() -> None:
    d = sm2_generate_private()
    public = sm2_public_key(d)
    first, second = sm2_sign(d, b"m"), sm2_sign(d, b"m")
    assert first != second
    assert sm2_verify(public, b"m", first) and sm2_verify(public, b"m", second)


def test_digest_api_matches_message_api() -> None:
    d = 0x1234567890ABCDEF
    public = sm2_public_key(d)
    e = sm3(sm2_za(public) + b"hello")
    k = 0xCAFEBABE
    signature = sm2_sign_digest(d, e, k=k)
    assert signature == sm2_sign(d, b"hello", k=k)
    assert sm2_verify_digest(public, e, signature)
    assert sm2_za(public) == sm2_za(public, DEFAULT_SM2_USER_ID, SM2P256V1)


def test_verify_rejects_out_of_range_signatures() -> None:
    d = 7
    public = sm2_public_key(d)
    e = sm3(b"x")
    size = 32
    for r, s in ((0, 1), (1, 0), (N, 1), (1, N), (1, N - 1)):
        signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")
        assert sm2_verify_digest(public, e, signature) is False
    good = sm2_sign_digest(d, e)
    assert sm2_verify_digest(public, e, good)
    assert sm2_verify_digest(public, e, good[:-1]) is False
    assert sm2_verify_digest(public, e, good + b"\x00") is False


def test_private_key_and_nonce_ranges() -> None:
    for bad in (0, -1, N - 1, N):
        with pytest.raises(CryptoError, match="private key"):
            sm2_public_key(bad)
        with pytest.raises(CryptoError, match="private key"):
            sm2_sign(bad, b"m")
    for bad_k in (0, N):
        with pytest.raises(CryptoError, match="nonce"):
            sm2_sign(5, b"m", k=bad_k)
    with pytest.raises(CryptoError, match="empty"):
        sm2_sign_digest(5, b"")


def test_generate_private_in_range() -> None:
    keys = {sm2_generate_private() for _ in range(20)}
    assert len(keys) == 20
    assert all(1 <= k <= N - 2 for k in keys)
    test_key = sm2_generate_private(SM2_GBT32918_TEST_CURVE)
    assert 1 <= test_key <= SM2_GBT32918_TEST_CURVE.n - 2


@given(d=private_keys)
@settings(max_examples=20, deadline=None)
def test_public_encoding_round_trip(d: int) -> None:
    public = sm2_public_key(d)
    encoded = sm2_encode_public(public)
    assert len(encoded) == 65
    assert encoded[0] == 0x04
    assert encoded[1:33] == public[0].to_bytes(32, "big")
    assert sm2_decode_public(encoded) == public


def test_decode_public_rejects_bad_points() -> None:
    public = sm2_public_key(3)
    encoded = sm2_encode_public(public)
    with pytest.raises(CryptoError, match="65 bytes"):
        sm2_decode_public(encoded[1:])
    with pytest.raises(CryptoError, match="starting 02"):
        sm2_decode_public(b"\x02" + encoded[1:])
    off_curve = encoded[:-1] + bytes([encoded[-1] ^ 1])
    with pytest.raises(CryptoError, match="not a point on the curve"):
        sm2_decode_public(off_curve)
    too_big = b"\x04" + SM2P256V1.p.to_bytes(32, "big") + encoded[33:]
    with pytest.raises(CryptoError, match="not a point"):
        sm2_decode_public(too_big)
    with pytest.raises(CryptoError, match="not a point"):
        sm2_encode_public((public[0], public[1] ^ 1))
    with pytest.raises(CryptoError, match="not a point"):
        sm2_verify((public[0], public[1] ^ 1), b"m", bytes(64))


def test_user_id_length_limit() -> None:
    public = sm2_public_key(3)
    assert len(sm2_za(public, bytes(8191))) == 32
    with pytest.raises(CryptoError, match="8192"):
        sm2_za(public, bytes(8192))


def test_curve_rejects_generator_off_curve() -> None:
    c = SM2P256V1
    with pytest.raises(CryptoError, match="generator"):
        Sm2Curve(p=c.p, a=c.a, b=c.b, gx=c.gx, gy=c.gy ^ 1, n=c.n)


@settings(max_examples=10, deadline=None)
@given(digest=st.binary(min_size=32, max_size=32), other=st.binary(min_size=32, max_size=32))
def test_deterministic_signatures_repeat_verify_and_depend_on_the_digest(
    digest: bytes, other: bytes
) -> None:
    d = 0x3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8
    public = sm2_public_key(d)
    first = sm2_sign_digest(d, digest, deterministic=True)
    assert sm2_sign_digest(d, digest, deterministic=True) == first
    assert sm2_verify_digest(public, digest, first) is True
    if other != digest:
        assert sm2_sign_digest(d, other, deterministic=True) != first
    # the random default still differs from call to call
    assert sm2_sign_digest(d, digest) != sm2_sign_digest(d, digest)

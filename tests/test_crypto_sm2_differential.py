"""Differential tests of the fast SM2 paths: random keys and messages, checked against a
textbook affine double-and-add reference written here, against gmssl (a separate pure-Python
SM2 implementation, a dev dependency) where it is installed, and against the system's OpenSSL 3
libcrypto (the compiled verification, ``crypto.sm2_openssl``) both ways where it is usable.

The pure-Python verification has three paths for u1*G + u2*P: a key seen for the first time
(width-5 NAF), the second time (builds the key's comb table) and later (cached table); every
case below runs all three, and libcrypto's answer on the standard curve.
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import pytest

from healthcard_apdu.crypto import (
    SM2_GBT32918_TEST_CURVE,
    SM2P256V1,
    CryptoError,
    Sm2Curve,
    sm2_backend,
    sm2_openssl,
    sm2_public_key,
    sm2_sign,
    sm2_sign_digest,
    sm2_verify,
    sm2_verify_digest,
    sm2_za,
    sm3,
)
from healthcard_apdu.crypto import sm2 as sm2_module
from healthcard_apdu.crypto.sm2 import sm2_clear_caches

Point = tuple[int, int]


# -- the reference: affine coordinates, double-and-add, one inversion per operation -----------


def _ref_add(a: Point | None, b: Point | None, curve: Sm2Curve) -> Point | None:
    p = curve.p
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


def _ref_mul(k: int, point: Point, curve: Sm2Curve) -> Point | None:
    result: Point | None = None
    addend: Point | None = point
    while k:
        if k & 1:
            result = _ref_add(result, addend, curve)
        addend = _ref_add(addend, addend, curve)
        k >>= 1
    return result


def _ref_verify(public: Point, e: bytes, signature: bytes, curve: Sm2Curve) -> bool:
    """GB/T 32918.2 §7 verification, step by step."""
    n = curve.n
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    if not (1 <= r < n and 1 <= s < n):
        return False
    t = (r + s) % n
    if t == 0:
        return False
    point = _ref_add(
        _ref_mul(s, curve.generator, curve), _ref_mul(t, public, curve), curve
    )
    return point is not None and (int.from_bytes(e, "big") + point[0]) % n == r


def _fast_verify_all_paths(public: Point, e: bytes, signature: bytes, curve: Sm2Curve) -> bool:
    """The pure-Python verification on the first, second and a later sighting of the key, the
    default (libcrypto when usable) and libcrypto forced; all must agree."""
    results = [sm2_verify_digest(public, e, signature, curve, backend="python") for _ in range(3)]
    assert len(set(results)) == 1, "the NAF, table-building and cached paths disagree"
    assert sm2_verify_digest(public, e, signature, curve) is results[0]
    if curve == SM2P256V1 and sm2_openssl.available():
        assert sm2_verify_digest(public, e, signature, curve, backend="openssl") is results[0]
    return results[0]


def _tampered(signature: bytes, rng: random.Random) -> bytes:
    flipped = bytearray(signature)
    flipped[rng.randrange(64)] ^= 1 << rng.randrange(8)
    return bytes(flipped)


@pytest.mark.parametrize("curve", [SM2P256V1, SM2_GBT32918_TEST_CURVE], ids=["sm2p256v1", "test"])
def test_fast_verify_matches_reference_on_random_keys_and_messages(curve: Sm2Curve) -> None:
    rng = random.Random(20240616)
    sm2_clear_caches()
    for _ in range(12):
        d = rng.randrange(1, curve.n - 1)
        public = sm2_public_key(d, curve)
        assert public == _ref_mul(d, curve.generator, curve)
        message = rng.randbytes(rng.randrange(0, 300))
        user_id = rng.randbytes(rng.randrange(0, 20))
        e = sm3(sm2_za(public, user_id, curve) + message)
        signature = sm2_sign(d, message, user_id, curve=curve)
        assert _ref_verify(public, e, signature, curve)
        assert _fast_verify_all_paths(public, e, signature, curve)
        bad = _tampered(signature, rng)
        assert _fast_verify_all_paths(public, e, bad, curve) is _ref_verify(public, e, bad, curve)
        other_e = sm3(e)
        assert _fast_verify_all_paths(public, other_e, signature, curve) is False
        assert _ref_verify(public, other_e, signature, curve) is False
        other_key = sm2_public_key(d % (curve.n - 3) + 1, curve)
        assert _fast_verify_all_paths(other_key, e, signature, curve) is False


def test_reference_signatures_with_random_nonces_verify_fast() -> None:
    """Signatures computed by the reference (affine k*G) verify on every fast path."""
    curve = SM2P256V1
    rng = random.Random(7)
    sm2_clear_caches()
    for _ in range(8):
        d = rng.randrange(1, curve.n - 1)
        public = sm2_public_key(d, curve)
        e = rng.randbytes(32)
        k = rng.randrange(1, curve.n)
        kg = _ref_mul(k, curve.generator, curve)
        assert kg is not None
        r = (int.from_bytes(e, "big") + kg[0]) % curve.n
        s = pow(1 + d, -1, curve.n) * (k - r * d) % curve.n
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        assert signature == sm2_sign_digest(d, e, k=k)
        assert _fast_verify_all_paths(public, e, signature, curve)


@pytest.mark.parametrize(
    "k",
    [1, 2, 3, 127, 128, 255, 256, 257, 2**64 - 1, 2**255, SM2P256V1.n - 2, SM2P256V1.n - 1],
)
def test_comb_and_naf_multiples_at_edge_scalars(k: int) -> None:
    """The generator table, a key table and the NAF give the reference's k*P."""
    curve = SM2P256V1
    point = sm2_public_key(0xC0FFEE)
    comb = sm2_module._comb_table(point, sm2_module._KEY_WINDOW, curve)
    expected = _ref_mul(k, point, curve)
    assert sm2_module._to_affine(sm2_module._comb_mult(k, comb, curve), curve) == expected
    assert sm2_module._to_affine(sm2_module._wnaf_mult(k, point, curve), curve) == expected
    g = sm2_module._to_affine(sm2_module._base_mult(k, curve), curve)
    assert g == _ref_mul(k, curve.generator, curve)


def test_key_tables_stay_bounded() -> None:
    sm2_clear_caches()
    e = sm3(b"bounded")
    for d in range(2, 2 + 2 * sm2_module._MAX_CACHED_KEYS + 3):
        public = sm2_public_key(d)
        signature = sm2_sign_digest(d, e)
        assert sm2_verify_digest(public, e, signature, backend="python")
        assert sm2_verify_digest(public, e, signature, backend="python")
    assert len(sm2_module._KEY_TABLES) == sm2_module._MAX_CACHED_KEYS
    assert len(sm2_module._SEEN_KEYS) <= sm2_module._MAX_SEEN_KEYS


# -- against gmssl ----------------------------------------------------------------------------


def test_both_ways_against_gmssl() -> None:
    gmssl_sm2 = pytest.importorskip("gmssl.sm2")
    rng = random.Random(3)
    sm2_clear_caches()
    for _ in range(10):
        d = rng.randrange(1, SM2P256V1.n - 1)
        public = sm2_public_key(d)
        public_hex = f"{public[0]:064x}{public[1]:064x}"
        theirs = gmssl_sm2.CryptSM2(private_key=f"{d:064x}", public_key=public_hex)
        message = rng.randbytes(rng.randrange(1, 200))
        e = sm3(sm2_za(public) + message)
        k = rng.randrange(1, SM2P256V1.n)
        # the same nonce gives the same signature in both
        their_signature = theirs.sign(e, f"{k:064x}")
        assert their_signature is not None
        assert bytes.fromhex(their_signature) == sm2_sign_digest(d, e, k=k)
        # ours (deterministic and random nonces) verify in theirs, theirs in ours
        ours = sm2_sign(d, message)
        assert theirs.verify(ours.hex(), e)
        assert theirs.verify(sm2_sign_digest(d, e, deterministic=True).hex(), e)
        assert _fast_verify_all_paths(public, e, bytes.fromhex(their_signature), SM2P256V1)
        assert sm2_verify(public, message, ours)
        # a tampered signature fails in both
        bad = _tampered(ours, rng)
        assert not theirs.verify(bad.hex(), e)
        assert _fast_verify_all_paths(public, e, bad, SM2P256V1) is False


# -- against libcrypto (OpenSSL 3) ------------------------------------------------------------


def _libcrypto() -> None:
    if not sm2_openssl.available():
        pytest.skip(f"libcrypto SM2 not usable here: {sm2_openssl.problem()}")


def test_both_ways_against_libcrypto() -> None:
    """Ours verify in libcrypto and libcrypto's in ours (and in the reference); tampered
    signatures, other digests and other keys fail in both."""
    _libcrypto()
    rng = random.Random(16)
    sm2_clear_caches()
    for _ in range(16):
        d = rng.randrange(1, SM2P256V1.n - 1)
        public = sm2_public_key(d)
        message = rng.randbytes(rng.randrange(0, 3100))
        e = sm3(sm2_za(public) + message)
        for ours in (sm2_sign(d, message), sm2_sign_digest(d, e, deterministic=True)):
            assert sm2_verify_digest(public, e, ours, backend="openssl")
            assert sm2_verify(public, message, ours, backend="openssl")
        theirs = sm2_openssl.sign_digest_random_nonce(d, e)
        assert _ref_verify(public, e, theirs, SM2P256V1)
        assert _fast_verify_all_paths(public, e, theirs, SM2P256V1)
        bad = _tampered(theirs, rng)
        expected = _ref_verify(public, e, bad, SM2P256V1)
        assert sm2_verify_digest(public, e, bad, backend="openssl") is expected
        assert _fast_verify_all_paths(public, e, bad, SM2P256V1) is expected
        assert sm2_verify_digest(public, sm3(e), theirs, backend="openssl") is False
        other_key = sm2_public_key(d % (SM2P256V1.n - 3) + 1)
        assert sm2_verify_digest(other_key, e, theirs, backend="openssl") is False


@pytest.mark.parametrize(
    "signature",
    [
        b"",
        bytes(64),  # r = s = 0
        SM2P256V1.n.to_bytes(32, "big") + (1).to_bytes(32, "big"),  # r = n
        (1).to_bytes(32, "big") + (SM2P256V1.n - 1).to_bytes(32, "big"),  # r + s = n: t = 0
        (1).to_bytes(32, "big") * 2,
        bytes(63) + b"\x01",
    ],
)
def test_out_of_range_signatures_fail_on_every_backend(signature: bytes) -> None:
    public = sm2_public_key(0xC0FFEE)
    e = sm3(b"range")
    assert sm2_verify_digest(public, e, signature, backend="python") is False
    assert sm2_verify_digest(public, e, signature) is False
    if sm2_openssl.available():
        assert sm2_verify_digest(public, e, signature, backend="openssl") is False


def test_libcrypto_keys_stay_bounded_and_are_reused() -> None:
    _libcrypto()
    e = sm3(b"keys")
    for d in range(2, 2 + sm2_openssl._MAX_KEYS + 5):
        assert sm2_verify_digest(sm2_public_key(d), e, sm2_sign_digest(d, e), backend="openssl")
    assert len(sm2_openssl._KEYS) == sm2_openssl._MAX_KEYS
    d = 2 + sm2_openssl._MAX_KEYS + 4
    last = sm2_public_key(d)
    held = sm2_openssl._KEYS[last]
    assert len(held.idle) == 1  # the context of the verification above, set up for the next
    signature = sm2_sign_digest(d, e)
    assert sm2_verify_digest(last, e, signature, backend="openssl")
    assert sm2_openssl._KEYS[last] is held and len(held.idle) == 1
    assert not sm2_verify_digest(last, sm3(e), signature, backend="openssl")
    assert len(held.idle) == 0  # a context is not reused after a failed verification
    library = sm2_openssl._LOADED[0]
    assert library is not None
    unused = sm2_openssl._prepare(library, last, e, signature)
    del unused  # a check that never ran gives its context back
    assert len(held.idle) == 1


def test_libcrypto_checks_from_several_threads_at_once() -> None:
    _libcrypto()
    keys = [0xA11CE + i for i in range(3)]
    cases = []
    for d in keys:
        e = sm3(d.to_bytes(4, "big"))
        good = sm2_sign_digest(d, e)
        bad = _tampered(good, random.Random(d))
        cases += [(sm2_public_key(d), e, good, True), (sm2_public_key(d), e, bad, False)]

    def work(index: int) -> list[bool]:
        return [
            sm2_verify_digest(public, e, signature, backend="openssl") is expected
            for public, e, signature, expected in cases[index % 2 :] * 6
        ]

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(work, range(8)))
    assert all(all(row) for row in results)
    for public, _, _, _ in cases:
        assert len(sm2_openssl._KEYS[public].idle) <= sm2_openssl._MAX_IDLE


def test_the_compiled_check_is_refused_where_it_does_not_apply() -> None:
    _libcrypto()
    public = sm2_public_key(5, SM2_GBT32918_TEST_CURVE)
    e = sm3(b"curve")
    signature = sm2_sign_digest(5, e, curve=SM2_GBT32918_TEST_CURVE)
    with pytest.raises(CryptoError, match="sm2p256v1"):
        sm2_verify_digest(public, e, signature, SM2_GBT32918_TEST_CURVE, backend="openssl")
    assert sm2_verify_digest(public, e, signature, SM2_GBT32918_TEST_CURVE)  # falls back
    with pytest.raises(ValueError, match="backend"):
        sm2_verify_digest(public, e, signature, backend="gmp")


def test_without_a_usable_libcrypto_the_python_check_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The loader's fallbacks: no library found, or the environment choosing Python."""
    monkeypatch.setattr(sm2_openssl, "_PROBLEM", [""])
    monkeypatch.setattr(sm2_openssl, "_LIBRARY_NAMES", ("libcrypto-missing.so.99",))
    monkeypatch.setattr(sm2_openssl.ctypes.util, "find_library", lambda name: None)
    assert sm2_openssl._load() is None
    assert "libcrypto-missing.so.99" in sm2_openssl._PROBLEM[0]
    monkeypatch.setenv(sm2_openssl.BACKEND_ENV, "python")
    assert sm2_openssl._load() is None
    assert sm2_openssl._PROBLEM[0] == f"{sm2_openssl.BACKEND_ENV}=python"
    monkeypatch.setattr(sm2_openssl, "_LOADED", [None])
    d = 0xBEEF
    e = sm3(b"fallback")
    signature = sm2_sign_digest(d, e)
    assert sm2_backend() == "python"
    assert sm2_verify_digest(sm2_public_key(d), e, signature) is True
    with pytest.raises(CryptoError, match="libcrypto"):
        sm2_verify_digest(sm2_public_key(d), e, signature, backend="openssl")

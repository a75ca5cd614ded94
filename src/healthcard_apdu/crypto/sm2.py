"""SM2 digital signatures (GB/T 32918.2 / GM/T 0003.2) on plain Python integers.

Points use Jacobian coordinates; scalar multiples of the generator use a per-curve table
of precomputed multiples (built once per curve, public data only), other points a 4-bit
fixed window. SM3 comes from ``cryptography``.

This code is not constant-time: timing may leak information about private keys and
nonces. It is meant for tests, simulation and personalization hosts, not for hostile
shared environments.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

from .errors import CryptoError
from .sm3 import sm3

__all__ = [
    "DEFAULT_SM2_USER_ID",
    "SM2P256V1",
    "SM2_GBT32918_TEST_CURVE",
    "Sm2Curve",
    "sm2_decode_public",
    "sm2_encode_public",
    "sm2_generate_private",
    "sm2_public_key",
    "sm2_sign",
    "sm2_sign_digest",
    "sm2_verify",
    "sm2_verify_digest",
    "sm2_za",
]

DEFAULT_SM2_USER_ID = b"1234567812345678"

Point = tuple[int, int]
_Jacobian = tuple[int, int, int]
_INFINITY: _Jacobian = (1, 1, 0)
_WINDOW_BITS = 4
_WINDOW_SIZE = 1 << _WINDOW_BITS


@dataclass(frozen=True)
class Sm2Curve:
    """Short Weierstrass curve y^2 = x^3 + ax + b over F_p with generator (gx, gy) of order n."""

    p: int
    a: int
    b: int
    gx: int
    gy: int
    n: int

    def __post_init__(self) -> None:
        if not _on_curve(self, (self.gx, self.gy)):
            raise CryptoError("SM2 curve: generator is not on the curve")

    @property
    def byte_length(self) -> int:
        """Length of one coordinate / scalar in bytes (32 for 256-bit curves)."""
        return (self.p.bit_length() + 7) // 8

    @property
    def generator(self) -> Point:
        return (self.gx, self.gy)


def _on_curve(curve: Sm2Curve, point: Point) -> bool:
    x, y = point
    p = curve.p
    if not (0 <= x < p and 0 <= y < p):
        return False
    return (y * y - (x * x * x + curve.a * x + curve.b)) % p == 0


SM2P256V1 = Sm2Curve(
    p=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF,
    a=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC,
    b=0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93,
    gx=0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7,
    gy=0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0,
    n=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123,
)
"""The standard SM2 curve (GB/T 32918.5 / GM/T 0003.5)."""

SM2_GBT32918_TEST_CURVE = Sm2Curve(
    p=0x8542D69E4C044F18E8B92435BF6FF7DE457283915C45517D722EDB8B08F1DFC3,
    a=0x787968B4FA32C3FD2417842E73BBFEFF2F3C848B6831D7E0EC65228B3937E498,
    b=0x63E4C6D3B23B0C849CF84241484BFE48F61D59A5B16BA06E6E12D1DA27C5249A,
    gx=0x421DEBD61B62EAB6746434EBC3CC315E32220B3BADD50BDC4C4E6C147FEDD43D,
    gy=0x0680512BCBB42C07D47349D2153B70C4E5D7FDFCBFA36EA1A85841B9E46E09A2,
    n=0x8542D69E4C044F18E8B92435BF6FF7DD297720630485628D5AE74EE7C32E79B7,
)
"""The Fp-256 example curve of GB/T 32918.2-2016 Annex A (for known-answer tests only)."""


# --- point arithmetic (Jacobian: x = X/Z^2, y = Y/Z^3) ----------------------------------


def _double(pt: _Jacobian, curve: Sm2Curve) -> _Jacobian:
    x1, y1, z1 = pt
    if z1 == 0 or y1 == 0:
        return _INFINITY
    p = curve.p
    yy = y1 * y1 % p
    s = 4 * x1 * yy % p
    zz = z1 * z1 % p
    a_is_minus_3 = curve.a == p - 3
    m = 3 * (x1 - zz) * (x1 + zz) % p if a_is_minus_3 else (3 * x1 * x1 + curve.a * zz * zz) % p
    x3 = (m * m - 2 * s) % p
    y3 = (m * (s - x3) - 8 * yy * yy) % p
    return (x3, y3, 2 * y1 * z1 % p)


def _add_affine(pt: _Jacobian, q: Point, curve: Sm2Curve) -> _Jacobian:
    """Jacobian + affine (mixed addition)."""
    x1, y1, z1 = pt
    if z1 == 0:
        return (q[0], q[1], 1)
    p = curve.p
    z1z1 = z1 * z1 % p
    h = (q[0] * z1z1 - x1) % p
    r = (q[1] * z1 * z1z1 - y1) % p
    if h == 0:
        return _double(pt, curve) if r == 0 else _INFINITY
    hh = h * h % p
    hhh = h * hh % p
    v = x1 * hh % p
    x3 = (r * r - hhh - 2 * v) % p
    y3 = (r * (v - x3) - y1 * hhh) % p
    return (x3, y3, z1 * h % p)


def _add(pt: _Jacobian, other: _Jacobian, curve: Sm2Curve) -> _Jacobian:
    """Jacobian + Jacobian."""
    if other[2] == 0:
        return pt
    if pt[2] == 0:
        return other
    p = curve.p
    x1, y1, z1 = pt
    x2, y2, z2 = other
    z1z1 = z1 * z1 % p
    z2z2 = z2 * z2 % p
    u1 = x1 * z2z2 % p
    s1 = y1 * z2 * z2z2 % p
    h = (x2 * z1z1 - u1) % p
    r = (y2 * z1 * z1z1 - s1) % p
    if h == 0:
        return _double(pt, curve) if r == 0 else _INFINITY
    hh = h * h % p
    hhh = h * hh % p
    v = u1 * hh % p
    x3 = (r * r - hhh - 2 * v) % p
    y3 = (r * (v - x3) - s1 * hhh) % p
    return (x3, y3, z1 * z2 * h % p)


def _to_affine(pt: _Jacobian, curve: Sm2Curve) -> Point | None:
    x, y, z = pt
    if z == 0:
        return None
    p = curve.p
    z_inv = pow(z, -1, p)
    z_inv2 = z_inv * z_inv % p
    return (x * z_inv2 % p, y * z_inv2 * z_inv % p)


def _finite(pt: _Jacobian, curve: Sm2Curve) -> Point:
    """Affine form of a point that cannot be infinity for valid inputs."""
    point = _to_affine(pt, curve)
    if point is None:
        raise CryptoError("SM2: unexpected point at infinity")
    return point


def _multiples(base: Point, curve: Sm2Curve) -> list[Point | None]:
    """[None, 1*base, 2*base, ..., 15*base] in affine form."""
    table: list[Point | None] = [None, base]
    acc: _Jacobian = (base[0], base[1], 1)
    for _ in range(2, _WINDOW_SIZE):
        acc = _add_affine(acc, base, curve)
        table.append(_to_affine(acc, curve))
    return table


def _window_mult(k: int, base: Point, curve: Sm2Curve) -> _Jacobian:
    """k * base for any point, fixed 4-bit window."""
    table = _multiples(base, curve)
    acc = _INFINITY
    for shift in range(((k.bit_length() + 3) // 4) * 4 - 4, -1, -4):
        for _ in range(_WINDOW_BITS):
            acc = _double(acc, curve)
        entry = table[(k >> shift) & 0xF]
        if entry is not None:
            acc = _add_affine(acc, entry, curve)
    return acc


_BASE_TABLES: dict[Sm2Curve, list[list[Point | None]]] = {}
_MAX_CACHED_CURVES = 4


def _base_table(curve: Sm2Curve) -> list[list[Point | None]]:
    """table[i][j] = j * 16^i * G; public data, cached per curve (bounded)."""
    table = _BASE_TABLES.get(curve)
    if table is None:
        table = []
        base = curve.generator
        for _ in range((curve.n.bit_length() + 3) // 4):
            table.append(_multiples(base, curve))
            acc: _Jacobian = (base[0], base[1], 1)
            for _ in range(_WINDOW_BITS):
                acc = _double(acc, curve)
            base = _finite(acc, curve)  # 16 * base
        if len(_BASE_TABLES) >= _MAX_CACHED_CURVES:
            _BASE_TABLES.clear()
        _BASE_TABLES[curve] = table
    return table


def _base_mult(k: int, curve: Sm2Curve) -> _Jacobian:
    """k * G using the precomputed generator table (no doublings)."""
    acc = _INFINITY
    for row in _base_table(curve):
        entry = row[k & 0xF]
        if entry is not None:
            acc = _add_affine(acc, entry, curve)
        k >>= 4
    if k:
        raise CryptoError("SM2 scalar is wider than the curve order")
    return acc


# --- keys ----------------------------------------------------------------------------


def _check_private(d: int, curve: Sm2Curve) -> None:
    if not 1 <= d <= curve.n - 2:
        raise CryptoError("SM2 private key out of range [1, n-2]")


def _check_public(public: Point, curve: Sm2Curve) -> None:
    if not _on_curve(curve, public):
        raise CryptoError("SM2 public key is not a point on the curve")


def sm2_generate_private(curve: Sm2Curve = SM2P256V1) -> int:
    """Random private key d in [1, n-2] (``secrets``)."""
    return secrets.randbelow(curve.n - 2) + 1


def sm2_public_key(d: int, curve: Sm2Curve = SM2P256V1) -> Point:
    """Public key P = d * G."""
    _check_private(d, curve)
    return _finite(_base_mult(d, curve), curve)


def sm2_encode_public(public: Point, curve: Sm2Curve = SM2P256V1) -> bytes:
    """Uncompressed encoding 04 || X || Y (65 bytes on 256-bit curves)."""
    _check_public(public, curve)
    size = curve.byte_length
    return b"\x04" + public[0].to_bytes(size, "big") + public[1].to_bytes(size, "big")


def sm2_decode_public(data: bytes, curve: Sm2Curve = SM2P256V1) -> Point:
    """Parse 04 || X || Y; CryptoError unless it is a point on the curve."""
    size = curve.byte_length
    if len(data) != 1 + 2 * size or data[0] != 0x04:
        raise CryptoError(
            f"SM2 public key must be 04||X||Y ({1 + 2 * size} bytes), got {len(data)} bytes"
            f" starting {data[:1].hex() or 'empty'}"
        )
    point = (int.from_bytes(data[1 : 1 + size], "big"), int.from_bytes(data[1 + size :], "big"))
    _check_public(point, curve)
    return point


# --- signatures ----------------------------------------------------------------------


def sm2_za(
    public: Point, user_id: bytes = DEFAULT_SM2_USER_ID, curve: Sm2Curve = SM2P256V1
) -> bytes:
    """Z_A = SM3(ENTL_A || ID_A || a || b || xG || yG || xA || yA)."""
    _check_public(public, curve)
    bits = len(user_id) * 8
    if bits > 0xFFFF:
        raise CryptoError(f"SM2 user ID is {len(user_id)} bytes, at most 8191 allowed")
    size = curve.byte_length
    fields = (curve.a, curve.b, curve.gx, curve.gy, public[0], public[1])
    return sm3(
        bits.to_bytes(2, "big") + bytes(user_id) + b"".join(v.to_bytes(size, "big") for v in fields)
    )


def rfc6979_nonces(private: int, digest: bytes, order: int) -> Iterator[int]:
    """Deterministic nonce candidates per RFC 6979 §3.2 with HMAC-SHA256, in order.

    The generation depends only on the private key, the digest and the group order, so it
    serves SM2 as it serves ECDSA; a candidate the signature rejects is replaced by the next.
    """
    qlen = order.bit_length()
    rolen = (qlen + 7) // 8

    def bits2int(data: bytes) -> int:
        value = int.from_bytes(data, "big")
        return value >> max(0, 8 * len(data) - qlen)

    def mac(key: bytes, data: bytes) -> bytes:
        return hmac.new(key, data, hashlib.sha256).digest()

    x = private.to_bytes(rolen, "big")
    h = (bits2int(digest) % order).to_bytes(rolen, "big")
    v, key = b"\x01" * 32, b"\x00" * 32
    key = mac(key, v + b"\x00" + x + h)
    v = mac(key, v)
    key = mac(key, v + b"\x01" + x + h)
    v = mac(key, v)
    while True:
        t = b""
        while len(t) < rolen:
            v = mac(key, v)
            t += v
        candidate = bits2int(t[:rolen])
        if 1 <= candidate < order:
            yield candidate
        key = mac(key, v + b"\x00")
        v = mac(key, v)


def sm2_sign_digest(
    d: int,
    e: bytes,
    *,
    k: int | None = None,
    deterministic: bool = False,
    curve: Sm2Curve = SM2P256V1,
) -> bytes:
    """Sign a precomputed e = SM3(Z_A || M); returns r || s (64 bytes on 256-bit curves).

    ``k`` fixes the nonce (known-answer tests only); ``deterministic`` derives it from the key
    and the digest (RFC 6979, so the same record always gets the same signature); otherwise
    it is drawn with ``secrets``.
    """
    _check_private(d, curve)
    if not e:
        raise CryptoError("SM2 digest e is empty")
    n = curve.n
    e_int = int.from_bytes(e, "big")
    d_inv = pow(1 + d, -1, n)
    candidates = rfc6979_nonces(d, e, n) if deterministic and k is None else None
    while True:
        if k is not None:
            nonce = k
        elif candidates is not None:
            nonce = next(candidates)
        else:
            nonce = secrets.randbelow(n - 1) + 1
        if not 1 <= nonce < n:
            raise CryptoError("SM2 nonce k out of range [1, n-1]")
        x1 = _finite(_base_mult(nonce, curve), curve)[0]
        r = (e_int + x1) % n
        s = d_inv * (nonce - r * d) % n
        if r != 0 and r + nonce != n and s != 0:
            size = curve.byte_length
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")
        if k is not None:
            raise CryptoError("SM2 nonce k gives a degenerate signature; choose another k")


def sm2_sign(
    d: int,
    message: bytes,
    user_id: bytes = DEFAULT_SM2_USER_ID,
    *,
    k: int | None = None,
    curve: Sm2Curve = SM2P256V1,
) -> bytes:
    """SM2 signature r || s over ``message`` with e = SM3(Z_A || M)."""
    public = sm2_public_key(d, curve)
    e = sm3(sm2_za(public, user_id, curve) + bytes(message))
    return sm2_sign_digest(d, e, k=k, curve=curve)


def sm2_verify_digest(
    public: Point, e: bytes, signature: bytes, curve: Sm2Curve = SM2P256V1
) -> bool:
    """Check r || s against a precomputed e. CryptoError only for an invalid public key."""
    _check_public(public, curve)
    size = curve.byte_length
    if len(signature) != 2 * size:
        return False
    n = curve.n
    r = int.from_bytes(signature[:size], "big")
    s = int.from_bytes(signature[size:], "big")
    if not (1 <= r < n and 1 <= s < n):
        return False
    t = (r + s) % n
    if t == 0:
        return False
    point = _to_affine(_add(_base_mult(s, curve), _window_mult(t, public, curve), curve), curve)
    if point is None:
        return False
    return (int.from_bytes(e, "big") + point[0]) % n == r


def sm2_verify(
    public: Point,
    message: bytes,
    signature: bytes,
    user_id: bytes = DEFAULT_SM2_USER_ID,
    curve: Sm2Curve = SM2P256V1,
) -> bool:
    """Verify an SM2 signature r || s over ``message`` for ``user_id``."""
    e = sm3(sm2_za(public, user_id, curve) + bytes(message))
    return sm2_verify_digest(public, e, signature, curve)
